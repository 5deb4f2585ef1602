// The Prometheus text exposition format (0.0.4): families with HELP and
// TYPE, then their samples, label values escaped.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::admin {

class PrometheusText {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

  // Starts a family; its samples follow. `type`: counter, gauge, histogram.
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, double value, Labels labels = {});
  void sample(std::string_view name, std::uint64_t value, Labels labels = {});
  // A family of one sample, without labels.
  void single(std::string_view name, std::string_view type, std::string_view help, double value) {
    family(name, type, help);
    sample(name, value);
  }
  // The samples of one histogram (its family started by family(..., "histogram")):
  // cumulative _bucket{le}, _sum and _count. `counts` per bucket, the last +Inf.
  void histogram(std::string_view name, const std::vector<double>& bounds,
                 const std::vector<std::uint64_t>& counts, double sum,
                 std::pair<std::string_view, std::string_view> label = {});
  std::string take() { return std::move(out_); }

 private:
  void head(std::string_view name, Labels labels);
  std::string out_;
};

}  // namespace sluice::admin
