// The admin server's pure parts: tokens, percent-decoding, the Prometheus
// text format, the OTLP/JSON export body.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "admin/http_server.hpp"
#include "admin/otlp_exporter.hpp"
#include "admin/prometheus_text.hpp"
#include "admin/tokens.hpp"

namespace sluice::admin {
namespace {

TEST(Tokens, ASecretIsFoundByItsDigestWithItsRoleAndNothingElseIs) {
  const std::string secret = make_secret();
  EXPECT_TRUE(secret.starts_with("sluice_"));
  EXPECT_EQ(secret.size(), 7u + 43u);  // 256 bits of base64url, unpadded
  EXPECT_NE(make_secret(), secret);
  config::AdminConfig config;
  config.tokens.push_back({"ops", sha256_hex(secret), "operator"});
  std::string error;
  const auto table = TokenTable::load(config, error);
  ASSERT_TRUE(table) << error;
  const Token* found = table->find(secret);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->name, "ops");
  EXPECT_EQ(found->role, Role::kOperator);
  EXPECT_EQ(table->find(secret + "x"), nullptr);
  EXPECT_EQ(table->find(""), nullptr);
  EXPECT_EQ(table->find(sha256_hex(secret)), nullptr);  // the digest is not the secret
}

TEST(Tokens, Sha256IsTheStandardOne) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Tokens, ATokenFileIsReadAndItsErrorsNameTheLine) {
  const auto path = std::filesystem::temp_directory_path() / "sluice_admin_tokens_test";
  const std::string digest(64, 'a');
  {
    std::ofstream out(path);
    out << "# who may\n\nviewer1 viewer " << digest << "\n";
  }
  config::AdminConfig config;
  config.token_file = path.string();
  std::string error;
  auto table = TokenTable::load(config, error);
  ASSERT_TRUE(table) << error;
  EXPECT_EQ(table->size(), 1u);
  {
    std::ofstream out(path, std::ios::app);
    out << "bad root " << digest << "\n";
  }
  EXPECT_FALSE(TokenTable::load(config, error));
  EXPECT_NE(error.find(":4: expected: NAME ROLE SHA256"), std::string::npos) << error;
  {
    std::ofstream out(path);
    out << "a viewer " << digest << "\na admin " << digest << "\n";
  }
  EXPECT_FALSE(TokenTable::load(config, error));
  EXPECT_NE(error.find(":2: token 'a' is named twice"), std::string::npos) << error;
  std::filesystem::remove(path);
}

TEST(PercentDecode, DecodesAndRefusesWhatIsMalformed) {
  EXPECT_EQ(percent_decode("a%2Fb%20c", false), "a/b c");
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
  EXPECT_EQ(percent_decode("%", false), std::nullopt);
  EXPECT_EQ(percent_decode("%4", false), std::nullopt);
  EXPECT_EQ(percent_decode("%zz", false), std::nullopt);
  EXPECT_EQ(percent_decode("%41", false), "A");
}

TEST(PrometheusText, EscapesLabelValuesAndHelp) {
  PrometheusText out;
  out.family("x_total", "counter", "a \\ help\nline");
  out.sample("x_total", std::uint64_t{3}, {{"group", "a\"b\\c\nd"}, {"queue", "q"}});
  out.sample("x_total", 1.5);
  EXPECT_EQ(out.take(),
            "# HELP x_total a \\\\ help\\nline\n# TYPE x_total counter\n"
            "x_total{group=\"a\\\"b\\\\c\\nd\",queue=\"q\"} 3\nx_total 1.5\n");
}

TEST(OtlpExporter, TheBodyIsOtlpJsonWithHexIdsAndDecimalTimes) {
  broker::Span root;
  root.trace_id.fill(0xab);
  root.span_id.fill(0x01);
  root.name = "sluice.receive";
  root.kind = broker::SpanKind::kServer;
  root.start_ns = 1'700'000'000'000'000'001;
  root.end_ns = 1'700'000'000'000'000'002;
  root.attributes = {{"messaging.destination.name", "a/b"}};
  broker::Span child = root;
  child.span_id.fill(0x02);
  child.parent = root.span_id;
  child.failed = true;
  const auto body = nlohmann::json::parse(OtlpExporter::body({root, child}, "svc", "1.2"));
  const auto& resource = body["resourceSpans"][0];
  EXPECT_EQ(resource["resource"]["attributes"][0],
            nlohmann::json::parse(R"({"key":"service.name","value":{"stringValue":"svc"}})"));
  const auto& spans = resource["scopeSpans"][0]["spans"];
  ASSERT_EQ(spans.size(), 2u);
  std::string ab;
  for (int i = 0; i < 16; ++i)
    ab += "ab";
  EXPECT_EQ(spans[0]["traceId"], ab);
  EXPECT_EQ(spans[0]["spanId"], "0101010101010101");
  EXPECT_FALSE(spans[0].contains("parentSpanId"));
  EXPECT_EQ(spans[0]["kind"], 2);
  EXPECT_EQ(spans[0]["startTimeUnixNano"], "1700000000000000001");
  EXPECT_EQ(spans[0]["status"], nlohmann::json::object());
  EXPECT_EQ(spans[1]["parentSpanId"], "0101010101010101");
  EXPECT_EQ(spans[1]["status"]["code"], 2);
  EXPECT_EQ(spans[0]["attributes"][0]["value"]["stringValue"], "a/b");
}

}  // namespace
}  // namespace sluice::admin
