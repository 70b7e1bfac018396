// The bash side of the kernel: a driver loop that runs inside the long-lived
// shell, and the one-line runner it sources for every cell.
//
// Channels (fd numbers inside the shell):
//   60  command pipe, kernel -> shell: records "KIND\0PAYLOAD\0", KIND is
//       `cell` (PAYLOAD is the code) or `query` (code run in a subshell whose
//       stdout is the answer)
//   61  ack pipe, kernel -> shell: one byte per `display` request, '0' shown, '1' not
//   62  control pipe, shell -> kernel: NUL-terminated records
//       "ready VERSION", "start", "done STATUS", "display PATH", "reply TEXT"
//   63  a memfd holding runner_script
// stdin is /dev/null, so user code cannot eat the command channel; cell
// completion and $? travel on fd 62, never in stdout.
#pragma once

namespace kernex::bash {

inline constexpr int command_fd = 60;
inline constexpr int ack_fd = 61;
inline constexpr int control_fd = 62;
inline constexpr int runner_fd = 63;

// Passed as `bash --noprofile --norc -c DRIVER bash`.
extern const char* const driver_script;
// The file the driver sources for each cell (sourced, so that `return` from
// the SIGINT trap can unwind the cell; evaluated, so that $LINENO counts the
// cell's own lines).
extern const char* const runner_script;
// How bash names the runner in its error messages ("/dev/fd/63: line 2: ...").
extern const char* const runner_error_prefix;

}  // namespace kernex::bash
