// libraft's headers, which declare C functions without extern "C".
#pragma once

extern "C" {
#include <raft.h>
#include <raft/uv.h>
}
