// multi_kernel_manager: a thread-safe map of kernel id -> kernel_manager.
// Kernels start and stop outside the lock, so slow kernels never hold up
// calls about other kernels.
#include "kernex/multi_kernel_manager.hpp"

#include <future>

#include "kernex/error.hpp"

namespace kernex {

multi_kernel_manager::~multi_kernel_manager() { shutdown_all(true); }

std::string multi_kernel_manager::start(kernel_options options) {
    auto km = std::make_shared<kernel_manager>(kernel_manager::start(std::move(options)));
    std::string id = km->id();
    std::lock_guard lock(m_mutex);
    m_kernels.emplace(id, std::move(km));
    return id;
}

std::vector<std::string> multi_kernel_manager::list() const {
    std::lock_guard lock(m_mutex);
    std::vector<std::string> ids;
    ids.reserve(m_kernels.size());
    for (const auto& [id, km] : m_kernels) ids.push_back(id);
    return ids;
}

std::shared_ptr<kernel_manager> multi_kernel_manager::get(const std::string& id) const {
    std::lock_guard lock(m_mutex);
    auto it = m_kernels.find(id);
    if (it == m_kernels.end()) throw error(errc::not_found, "no kernel with id " + id + " (see list())");
    return it->second;
}

void multi_kernel_manager::interrupt(const std::string& id) { get(id)->interrupt(); }

void multi_kernel_manager::restart(const std::string& id, restart_options options) { get(id)->restart(options); }

void multi_kernel_manager::shutdown(const std::string& id, bool now) {
    std::shared_ptr<kernel_manager> km;
    {
        std::lock_guard lock(m_mutex);
        auto it = m_kernels.find(id);
        if (it == m_kernels.end()) throw error(errc::not_found, "no kernel with id " + id + " (see list())");
        km = std::move(it->second);
        m_kernels.erase(it);
    }
    km->shutdown(now);
}

void multi_kernel_manager::shutdown_all(bool now) noexcept {
    std::unordered_map<std::string, std::shared_ptr<kernel_manager>> kernels;
    {
        std::lock_guard lock(m_mutex);
        kernels.swap(m_kernels);
    }
    // In parallel: each shutdown may wait for its kernel's reply.
    std::vector<std::thread> threads;
    for (auto& [id, km] : kernels) {
        try {
            threads.emplace_back([k = km, now] { k->shutdown(now); });
        } catch (...) {
            km->shutdown(now);
        }
    }
    for (auto& t : threads) t.join();
}

}  // namespace kernex
