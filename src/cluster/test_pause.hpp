// A pause a test asks for to widen a race it means to prove closed:
// SLUICE_TEST_PAUSE="<point>@<node id>:<ms>[,...]" pauses the thread that
// reaches `point` on that node. Only the sanitizer builds, the ones the
// tests run, read it; elsewhere it compiles to nothing.
#pragma once

#include <string_view>

namespace sluice::cluster {

// SLUICE_TEST_RAFT_APPEND_DELAY="<node id>:<ms>" makes that node's Raft
// logs a slow disk (RaftMemberConfig::append_delay_ms); 0 elsewhere.
#ifdef SLUICE_TEST_HOOKS
void test_pause(std::string_view point, std::string_view node_id);
unsigned test_append_delay_ms(std::string_view node_id);
// Says at start-up that pauses were asked for (a test waits for this line,
// and skips where the build has no hooks).
void log_test_pauses();
#else
inline void test_pause(std::string_view, std::string_view) {}
inline void log_test_pauses() {}
inline unsigned test_append_delay_ms(std::string_view) {
  return 0;
}
#endif

}  // namespace sluice::cluster
