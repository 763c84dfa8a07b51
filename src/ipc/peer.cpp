// Local peers: SO_PEERCRED, the allow rule and the refusal. See ipc/internal/peer.hpp.
#include "datapump/ipc/internal/peer.hpp"

#include "datapump/base/internal/log.hpp"
#include "datapump/ipc/internal/wire.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace datapump::ipc::internal {

peer_credentials read_peer_credentials(int sock) {
    peer_credentials out;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof(cred)) {
        out.pid = cred.pid;
        out.uid = cred.uid;
        out.gid = cred.gid;
        out.known = true;
    }
    return out;
}

bool peer_allowed(const peer_credentials& peer, const peer_rule& rule, uid_t self) {
    if (!peer.known) {
        return false;
    }
    if ((rule.allow_same_uid && peer.uid == self) || (rule.allow_root && peer.uid == 0)) {
        return true;
    }
    return std::find(rule.uids.begin(), rule.uids.end(), peer.uid) != rule.uids.end() ||
           std::find(rule.gids.begin(), rule.gids.end(), peer.gid) != rule.gids.end();
}

void send_refusal(int sock) {
    wire_header h{};
    h.type = static_cast<std::uint32_t>(msg::welcome);
    h.version = wire_version;
    h.flags = welcome_refused;
    h.status = -EACCES;
    // A fresh socket has room for one small message; never wait for a peer we refuse.
    (void)send_message(sock, h, {}, {}, true);
    // Closing a socket with unread messages (the peer's hello) makes the kernel report
    // ECONNRESET to the peer ahead of the refusal queued for it. So: shut both ways (the peer can
    // send nothing more: EPIPE), then drop what it sent before (its descriptors closed); reads
    // end at EOF and never wait, as no more can arrive.
    ::shutdown(sock, SHUT_RDWR);
    received m;
    for (int i = 0; i < 64; ++i) {
        auto got = receive_message(sock, 1 << 20, m);  // one message consumed per call, whatever it is
        if (!got && got.error().code != errc::protocol_error) {
            break;  // EOF: nothing more queued
        }
    }
}

void refusal_log::refused(std::string_view endpoint, const peer_credentials& peer) {
    const auto now = std::chrono::steady_clock::now();
    std::uint64_t skipped = 0;
    {
        std::lock_guard lock(mu_);
        if (now - window_ >= std::chrono::seconds(1)) {
            window_ = now;
            in_window_ = 0;
        }
        if (in_window_ >= burst_) {
            ++left_out_;
            return;
        }
        ++in_window_;
        skipped = std::exchange(left_out_, 0);
    }
    if (!peer.known) {
        spdlog::warn("ipc server {}: refused a peer whose credentials could not be read (SO_PEERCRED)", endpoint);
    } else {
        spdlog::warn("ipc server {}: refused pid {} (uid {}, gid {}): not allowed by the endpoint's peer rule "
                     "(server_options::peers)",
                     endpoint, peer.pid, peer.uid, peer.gid);
    }
    if (skipped > 0) {
        spdlog::warn("ipc server {}: {} more refused peer(s) were not logged (at most {} lines a second)", endpoint,
                     skipped, burst_);
    }
}

}  // namespace datapump::ipc::internal
