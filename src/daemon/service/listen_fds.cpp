#include "service/listen_fds.hpp"

#include <systemd/sd-daemon.h>

#include <fcntl.h>

#include <cstring>
#include <string>

namespace datapump::daemon::service {

inherited_sockets take_listen_fds() {
    inherited_sockets out;
    const int n = ::sd_listen_fds(1);
    if (n < 0) {
        // strerrordesc_np: a static string, unlike strerror's shared buffer (glibc >= 2.32).
        const char* why = ::strerrordesc_np(-n);
        out.error = std::string("socket activation: LISTEN_FDS/LISTEN_PID are set but unusable: ") +
                    (why != nullptr ? why : "unknown error");
        return out;
    }
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; ++fd) {
        // Inherited without close-on-exec: nothing the daemon starts may hold the listener.
        ::fcntl(fd, F_SETFD, FD_CLOEXEC);
        out.fds.push_back(fd);
    }
    return out;
}

}  // namespace datapump::daemon::service
