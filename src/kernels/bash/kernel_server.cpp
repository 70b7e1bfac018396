#include "kernel_server.hpp"

#include "bash_interpreter.hpp"

#include <xeus/xserver_shell_main.hpp>

#include <thread>

namespace kernex::bash {

namespace {

// xeus 2.4's interrupt_request handler only replies (the interpreter never
// hears of it), so the server interrupts the running cell as that reply
// leaves: the same path as SIGINT, safe from the control thread.
class kernel_server final : public xeus::xserver_shell_main {
public:
    using xeus::xserver_shell_main::xserver_shell_main;

private:
    // xeus publishes what the interpreter says on the shell channel's socket,
    // which belongs to the main thread; said on the control thread (a request
    // sent on control), it goes out through the control thread's own socket.
    void publish_impl(xeus::xpub_message message, xeus::channel channel) override {
        if (channel == xeus::channel::SHELL && std::this_thread::get_id() != m_main_thread)
            channel = xeus::channel::CONTROL;
        xeus::xserver_shell_main::publish_impl(std::move(message), channel);
    }

    void send_control_impl(xeus::xmessage message) override {
        if (message.header().value("msg_type", "") == "interrupt_reply")
            bash_interpreter::interrupt_live();
        xeus::xserver_shell_main::send_control_impl(std::move(message));
    }

    // xeus 2.4 names input_request's password flag "pwd"; the spec (and
    // jupyter_client, and kernex) read "password".
    void send_stdin_impl(xeus::xmessage message) override {
        nl::json content = message.content();
        if (content.contains("pwd") && !content.contains("password")) {
            content["password"] = content["pwd"];
            content.erase("pwd");
            message = xeus::xmessage(message.identities(), message.header(), message.parent_header(),
                                     message.metadata(), std::move(content), message.buffers());
        }
        xeus::xserver_shell_main::send_stdin_impl(std::move(message));
    }

    const std::thread::id m_main_thread = std::this_thread::get_id();  // built by xkernel there
};

}  // namespace

std::unique_ptr<xeus::xserver> make_kernel_server(xeus::xcontext& context,
                                                  const xeus::xconfiguration& config,
                                                  nl::json::error_handler_t error_handler) {
    return std::make_unique<kernel_server>(context.get_wrapped_context<zmq::context_t>(), config,
                                           error_handler);
}

}  // namespace kernex::bash
