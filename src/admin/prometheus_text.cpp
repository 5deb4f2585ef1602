#include "admin/prometheus_text.hpp"

#include <cmath>
#include <cstdio>

namespace sluice::admin {

void PrometheusText::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  for (const char c : help) {  // HELP escapes backslash and newline only
    if (c == '\\')
      out_ += "\\\\";
    else if (c == '\n')
      out_ += "\\n";
    else
      out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void PrometheusText::head(std::string_view name, Labels labels) {
  out_ += name;
  if (labels.size() == 0) {
    out_ += ' ';
    return;
  }
  out_ += '{';
  bool first = true;
  for (const auto& [label, value] : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += label;
    out_ += "=\"";
    for (const char c : value) {
      if (c == '\\')
        out_ += "\\\\";
      else if (c == '"')
        out_ += "\\\"";
      else if (c == '\n')
        out_ += "\\n";
      else
        out_ += c;
    }
    out_ += '"';
  }
  out_ += "} ";
}

void PrometheusText::sample(std::string_view name, std::uint64_t value, Labels labels) {
  head(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void PrometheusText::sample(std::string_view name, double value, Labels labels) {
  head(name, labels);
  if (std::isnan(value)) {
    out_ += "NaN";
  } else if (std::isinf(value)) {
    out_ += value > 0 ? "+Inf" : "-Inf";
  } else {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", value);
    out_ += text;
  }
  out_ += '\n';
}

void PrometheusText::histogram(std::string_view name, const std::vector<double>& bounds,
                               const std::vector<std::uint64_t>& counts, double sum,
                               std::pair<std::string_view, std::string_view> label) {
  const std::string bucket = std::string(name) + "_bucket";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    char le[32];
    if (i < bounds.size())
      std::snprintf(le, sizeof le, "%g", bounds[i]);
    else
      std::snprintf(le, sizeof le, "+Inf");
    if (label.first.empty())
      sample(bucket, cumulative, {{"le", le}});
    else
      sample(bucket, cumulative, {label, {"le", le}});
  }
  const std::string sum_name = std::string(name) + "_sum";
  const std::string count_name = std::string(name) + "_count";
  if (label.first.empty()) {
    sample(sum_name, sum);
    sample(count_name, cumulative);
  } else {
    sample(sum_name, sum, {label});
    sample(count_name, cumulative, {label});
  }
}

}  // namespace sluice::admin
