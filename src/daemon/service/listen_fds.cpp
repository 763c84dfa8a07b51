#include "service/listen_fds.hpp"

#include <systemd/sd-daemon.h>

#include <fcntl.h>

#include <cstring>

namespace datapump::daemon::service {

inherited_sockets take_listen_fds() {
    inherited_sockets out;
    const int n = ::sd_listen_fds(1);
    if (n < 0) {
        out.error = std::string("socket activation: LISTEN_FDS/LISTEN_PID are set but unusable: ") + std::strerror(-n);
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
