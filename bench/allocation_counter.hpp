// Counts heap allocations made by this process, so benchmarks can report
// allocations per operation beside time per operation.
#pragma once

#include <cstdint>

namespace sluice::bench {

// Allocations since the program started (operator new calls of any form).
std::uint64_t allocation_count();

}  // namespace sluice::bench
