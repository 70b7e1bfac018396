// Waiting helpers shared by child_process and run_process (internal to the
// process module).
#pragma once

#include "kernex/process.hpp"

namespace kernex::detail {

// Milliseconds from now to deadline for poll(), 0 once it has passed.
int poll_timeout(clock::time_point deadline) noexcept;

// The wait status of child pid once it has exited, without reaping it: the
// zombie keeps its pid and group id reserved, so the group can still be
// signalled safely. nullopt while it runs.
std::optional<int> exit_status(int pid) noexcept;

// Waits (on pidfd when there is one) until pid has exited or deadline
// passes; does not reap. Returns the wait status, or nullopt at the deadline.
std::optional<int> wait_exit_until(int pid, int pidfd, clock::time_point deadline) noexcept;

}  // namespace kernex::detail
