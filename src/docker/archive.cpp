#include "docker/archive.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include "confine/files.hpp"
#include "kernex/error.hpp"

namespace kernex::docker {

namespace {

constexpr std::size_t block = 512;

// A name a tar may carry into the work dir: relative, no "..", no empty
// component but a trailing '/' or "./" in front. nullopt when it may not.
std::optional<std::string> clean_name(std::string_view name) {
    while (name.starts_with("./")) name.remove_prefix(2);
    while (name.ends_with("/")) name.remove_suffix(1);
    if (name.empty() || name == "." || name.starts_with("/")) return std::nullopt;
    std::string out;
    std::size_t start = 0;
    while (start <= name.size()) {
        const std::size_t end = std::min(name.find('/', start), name.size());
        const std::string_view part = name.substr(start, end - start);
        if (part == "..") return std::nullopt;
        if (!part.empty() && part != ".") {
            if (!out.empty()) out += '/';
            out.append(part);
        }
        start = end + 1;
    }
    if (out.empty()) return std::nullopt;
    return out;
}

void put_octal(char* field, std::size_t width, std::uint64_t value) {
    // width - 1 digits and a NUL.
    std::memset(field, '0', width - 1);
    field[width - 1] = '\0';
    for (std::size_t i = width - 1; i-- > 0 && value > 0; value >>= 3) field[i] = static_cast<char>('0' + (value & 7));
}

void seal(char* header) {
    std::memset(header + 148, ' ', 8);
    unsigned sum = 0;
    for (std::size_t i = 0; i < block; ++i) sum += static_cast<unsigned char>(header[i]);
    put_octal(header + 148, 7, sum);
    header[155] = ' ';
}

void pad(std::string& out) { out.append((block - out.size() % block) % block, '\0'); }

void append_header(std::string& out, const std::string& name, char type, mode_t mode, unsigned uid, unsigned gid,
                   std::uint64_t size) {
    char h[block] = {};
    std::memcpy(h, name.data(), std::min<std::size_t>(name.size(), 100));
    put_octal(h + 100, 8, mode & 07777);
    put_octal(h + 108, 8, uid);
    put_octal(h + 116, 8, gid);
    put_octal(h + 124, 12, size);
    put_octal(h + 136, 12, 0);
    h[156] = type;
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    seal(h);
    out.append(h, block);
}

// A numeric header field: octal, or base-256 when its first byte has the high bit.
std::optional<std::uint64_t> number(const char* field, std::size_t width) {
    const auto* u = reinterpret_cast<const unsigned char*>(field);
    if (u[0] & 0x80) {
        std::uint64_t v = u[0] & 0x7f;
        for (std::size_t i = 1; i < width; ++i) {
            if (v >> 55) return std::nullopt;
            v = (v << 8) | u[i];
        }
        return v;
    }
    std::uint64_t v = 0;
    std::size_t i = 0;
    while (i < width && (field[i] == ' ' || field[i] == '\0')) ++i;
    for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) {
        if (v >> 60) return std::nullopt;
        v = v * 8 + static_cast<unsigned>(field[i] - '0');
    }
    return v;
}

std::string field_text(const char* field, std::size_t width) { return std::string(field, strnlen(field, width)); }

[[noreturn]] void not_a_tar(const std::string& why) {
    throw error(errc::protocol_error, "the Docker daemon sent an archive that is not a tar: " + why);
}

// The "path" and "size" of PAX records ("LEN key=value\n"...).
void read_pax(std::string_view records, std::optional<std::string>& path, std::optional<std::string>& link,
              std::uint64_t& size, bool& sized) {
    while (!records.empty()) {
        const auto space = records.find(' ');
        if (space == std::string_view::npos) return;
        std::size_t length = 0;
        for (char c : records.substr(0, space)) {
            if (c < '0' || c > '9' || length > records.size()) return;
            length = length * 10 + static_cast<std::size_t>(c - '0');
        }
        if (length <= space + 1 || length > records.size()) return;
        std::string_view record = records.substr(space + 1, length - space - 1);
        if (record.ends_with('\n')) record.remove_suffix(1);
        const auto eq = record.find('=');
        if (eq != std::string_view::npos) {
            const auto key = record.substr(0, eq);
            const auto value = record.substr(eq + 1);
            if (key == "path") path = std::string(value);
            if (key == "linkpath") link = std::string(value);
            if (key == "size") {
                std::uint64_t v = 0;
                for (char c : value) {
                    if (c < '0' || c > '9' || (v >> 58)) not_a_tar("a bad PAX size");
                    v = v * 10 + static_cast<unsigned>(c - '0');
                }
                size = v;
                sized = true;
            }
        }
        records.remove_prefix(length);
    }
}

// True when name beneath dir_fd is a regular file holding exactly bytes
// (opened with no symlink followed and nothing outside dir_fd reached).
bool holds(int dir_fd, const std::string& name, std::string_view bytes) {
    open_how how{};
    how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    const int fd = static_cast<int>(::syscall(SYS_openat2, dir_fd, name.c_str(), &how, sizeof how));
    if (fd < 0) return false;
    const unique_fd file(fd);
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) != bytes.size())
        return false;
    std::string have(bytes.size(), '\0');
    std::size_t done = 0;
    while (done < have.size()) {
        const ssize_t n = ::read(fd, have.data() + done, have.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        done += static_cast<std::size_t>(n);
    }
    return have == bytes;
}

}  // namespace

std::string make_tar(const std::vector<tar_entry>& entries) {
    std::string out;
    for (const auto& e : entries) {
        const auto name = clean_name(e.name);
        if (!name) throw error(errc::invalid_argument, "cannot put '" + e.name + "' in a tar: not a name inside the dir");
        const std::string stored = e.is_dir ? *name + "/" : *name;
        if (stored.size() > 100) {
            // A PAX extended header carries the whole name.
            std::string record = " path=" + stored + "\n";
            std::size_t length = record.size();
            while (std::to_string(length).size() + record.size() != length) length = std::to_string(length).size() + record.size();
            record = std::to_string(length) + record;
            append_header(out, "PaxHeaders/" + name->substr(0, 80), 'x', 0644, 0, 0, record.size());
            out += record;
            pad(out);
        }
        append_header(out, stored, e.is_dir ? '5' : '0', e.mode, e.uid, e.gid, e.is_dir ? 0 : e.content.size());
        if (!e.is_dir) {
            out += e.content;
            pad(out);
        }
    }
    out.append(2 * block, '\0');
    return out;
}

unpack_report unpack_beneath(int dir_fd, std::string_view tar, std::uint64_t max_bytes) {
    unpack_report report;
    std::uint64_t taken = 0;
    std::optional<std::string> long_name, long_link;
    // Files taken so far, by name: a hard link to one is taken as a copy of its bytes.
    std::map<std::string, std::string_view, std::less<>> files;
    std::uint64_t long_size = 0;
    bool long_sized = false;
    std::size_t at = 0;
    while (at + block <= tar.size()) {
        const char* h = tar.data() + at;
        if (std::all_of(h, h + block, [](char c) { return c == '\0'; })) break;  // the end
        unsigned sum = 0;
        for (std::size_t i = 0; i < block; ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
        const auto stated = number(h + 148, 8);
        if (!stated || *stated != sum) not_a_tar("a header's checksum does not match");
        const char type = h[156];
        auto size = number(h + 124, 12);
        if (!size) not_a_tar("a bad size");
        if (long_sized && type != 'x' && type != 'g' && type != 'L') size = long_size;
        const std::size_t data_at = at + block;
        if (*size > tar.size() - data_at) not_a_tar("it ends inside an entry");
        const std::string_view data = tar.substr(data_at, *size);
        at = data_at + (*size + block - 1) / block * block;

        if (type == 'x') {  // PAX: for the next entry
            read_pax(data, long_name, long_link, long_size, long_sized);
            continue;
        }
        if (type == 'g') continue;  // PAX global: nothing kernex uses
        if (type == 'L') {          // GNU long name
            long_name = std::string(data.substr(0, strnlen(data.data(), data.size())));
            continue;
        }
        std::string raw = long_name ? *long_name : [&] {
            std::string n = field_text(h, 100);
            const std::string prefix = field_text(h + 345, 155);
            if (std::memcmp(h + 257, "ustar", 5) == 0 && !prefix.empty()) n = prefix + "/" + n;
            return n;
        }();
        std::string link = long_link ? *long_link : field_text(h + 157, 100);
        long_name.reset();
        long_link.reset();
        long_sized = false;

        // The archived dir's own name first ("workspace/..."): stripped.
        const auto slash = raw.find('/');
        if (slash == std::string::npos || raw.find_first_not_of('/', slash) == std::string::npos) continue;
        const std::string inner = raw.substr(slash + 1);
        const auto name = clean_name(inner);
        if (!name) {
            report.refused.push_back(inner + ": its name leaves the dir");
            continue;
        }
        if (type == '5') continue;  // made on the way to the files in it
        std::string_view bytes = data;
        if (type == '1') {
            // A second name of a file: its bytes again, as a file of its own.
            const auto target = link.find('/') == std::string::npos ? std::nullopt : clean_name(link.substr(link.find('/') + 1));
            const auto it = target ? files.find(*target) : files.end();
            if (it == files.end()) {
                report.refused.push_back(*name + ": a hard link to a file not copied back");
                continue;
            }
            bytes = it->second;
        } else if (type != '0' && type != '\0' && type != '7') {
            const char* what = type == '2'   ? "a symbolic link"
                               : type == '3' ? "a character device"
                               : type == '4' ? "a block device"
                               : type == '6' ? "a FIFO"
                                             : "not a regular file";
            report.refused.push_back(*name + ": " + what);
            continue;
        }
        if (taken + bytes.size() > max_bytes) {
            report.dropped_bytes += bytes.size();
            continue;
        }
        if (holds(dir_fd, *name, bytes)) {
            taken += bytes.size();
            files.emplace(*name, bytes);
            continue;
        }
        const auto mode = number(h + 100, 8).value_or(0600);
        confine::create_options options;
        options.mode = (mode & 0111) ? 0700 : 0600;
        options.existing = confine::if_exists::replace;
        try {
            confine::write_beneath(dir_fd, *name, bytes, options);
            taken += bytes.size();
            report.written.push_back(*name);
            files.emplace(*name, bytes);
        } catch (const error& e) {
            report.refused.push_back(*name + ": " + e.what());
        }
    }
    return report;
}

}  // namespace kernex::docker
