// libFuzzer target: the loan server's decoding of its commands (src/loan/server.cpp, the
// structures of src/loan/protocol.hpp) — the real server, over a real cache and the posix provider
// on a small scratch root, reached through the command channel's in-process path (the server's
// exec handler gets exactly the bytes a socket client would put in a slot). The input is a
// sequence of commands: [code][flags][input length][output length][input bytes]. Flag bit 0 puts
// the last handle the server returned into the input's first 8 bytes, bit 1 the last lease id,
// so the fuzzer reaches borrow, give back and close with ids that exist. Each input is one
// connection, closed at the end (its leases and files dropped). Checked: every status is 0, 1 +
// an errc, or the channel's bad_command; no reply claims more output than it was given; the
// server's pins all come back once the connection is gone.
#include "datapump/base/internal/log.hpp"
#include "datapump/ipc/client.hpp"
#include "datapump/loan/server.hpp"
#include "protocol.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace datapump;
namespace proto = loan::protocol;

void check(bool condition, const char* what) {
    if (!condition) {
        std::fprintf(stderr, "fuzz_loan_protocol: broken promise: %s\n", what);
        std::abort();
    }
}

struct fixture {
    std::string root;
    std::unique_ptr<loan::server> srv;

    fixture() {
        spdlog::set_level(spdlog::level::off);
        char tmpl[] = "/tmp/datapump-fuzz-loan-XXXXXX";
        check(::mkdtemp(tmpl) != nullptr, "mkdtemp");
        root = tmpl;
        write(root + "/a", 200 * 1024);
        write(root + "/b", 10);
        write(root + "/empty", 0);
        ::mkdir((root + "/d").c_str(), 0755);
        write(root + "/d/c", 70 * 1024);
        (void)::symlink("..", (root + "/up").c_str());
        loan::server_config c;
        c.endpoint = "@datapump-fuzz-loan-" + std::to_string(::getpid());
        c.root = root;
        c.cache.buffers.buffer_size = 64 * 1024;
        c.cache.buffers.buffer_count = 8;
        c.lease_time = std::chrono::milliseconds(60000);  // no reclaim mid-input
        c.max_loan_bytes = 4 * 64 * 1024;
        c.max_files_per_client = 8;
        c.max_leases_per_client = 16;
        auto s = loan::server::create(c);
        check(s.has_value(), "the loan server starts");
        srv = std::move(*s);
    }

    fixture(const fixture&) = delete;
    fixture& operator=(const fixture&) = delete;
    ~fixture() {
        srv.reset();
        std::error_code ec;
        std::filesystem::remove_all(root, ec);
    }

    static void write(const std::string& path, std::size_t bytes) {
        std::ofstream out(path, std::ios::binary);
        for (std::size_t i = 0; i < bytes; ++i) {
            out.put(static_cast<char>('a' + i % 23));
        }
    }
};

fixture& the_fixture() {
    static fixture f;
    return f;
}

bool valid_status(std::int32_t status) {
    return status == 0 || status == ipc::bad_command ||
           (status >= 1 && static_cast<std::uint32_t>(status - 1) <= proto::last_errc);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fixture& fx = the_fixture();
    {
        ipc::client_options o;
        o.in_process = true;  // the server's handlers, called directly with our bytes
        auto c = ipc::client::init(fx.srv->endpoint(), o);
        check(c.has_value(), "an in-process client connects");
        std::uint64_t last_handle = 0;
        std::uint64_t last_lease = 0;
        std::vector<std::byte> in;
        std::vector<std::byte> out;
        for (int n = 0; size >= 4 && n < 32; ++n) {
            const std::uint32_t code = data[0] % 8;
            const std::uint8_t flags = data[1];
            std::size_t in_len = data[2];
            const std::size_t out_len = std::size_t{data[3]} * 8;
            data += 4;
            size -= 4;
            in_len = in_len > size ? size : in_len;
            in.assign(reinterpret_cast<const std::byte*>(data), reinterpret_cast<const std::byte*>(data) + in_len);
            data += in_len;
            size -= in_len;
            if ((flags & 1U) != 0 && in.size() >= 8) {
                std::memcpy(in.data(), &last_handle, 8);
            }
            if ((flags & 2U) != 0 && in.size() >= 8) {
                std::memcpy(in.data(), &last_lease, 8);
            }
            out.assign(out_len, std::byte{0});
            auto r = (*c)->execute(code, in, out);
            if (!r) {
                continue;
            }
            check(valid_status(r->status), "a status the protocol defines");
            check(r->output_len <= out.size(), "no reply claims more than its output");
            if (r->status != 0) {
                continue;
            }
            if (code == static_cast<std::uint32_t>(proto::command::open) && r->output_len == sizeof(proto::open_reply)) {
                proto::open_reply rep{};
                std::memcpy(&rep, out.data(), sizeof(rep));
                last_handle = rep.handle;
            }
            if (code == static_cast<std::uint32_t>(proto::command::borrow) &&
                r->output_len >= sizeof(proto::borrow_reply)) {
                proto::borrow_reply rep{};
                std::memcpy(&rep, out.data(), sizeof(rep));
                check(r->output_len == sizeof(rep) + std::size_t{rep.extent_count} * sizeof(proto::extent),
                      "a borrow reply is its extents");
                check(r->fds.size() <= 16, "at most 16 buffer descriptors per reply");
                last_lease = rep.lease;
            }
        }
        (*c)->deinit();
    }
    // The connection's close dropped its leases: no pin is left.
    check(fx.srv->stats().pinned_buffers == 0 && fx.srv->stats().leases_now == 0,
          "every pin comes back when the connection closes");
    return 0;
}
