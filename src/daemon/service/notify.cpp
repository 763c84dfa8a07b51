#include "service/notify.hpp"

#include <systemd/sd-daemon.h>

#include <ctime>
#include <string>

namespace datapump::daemon::service {

namespace {

void send(const std::string& state) {
    // unset_environment = 0: the reload and stop notifications need $NOTIFY_SOCKET later.
    (void)::sd_notify(0, state.c_str());
}

}  // namespace

void notify_ready() {
    send("READY=1");
}

void notify_reloading() {
    // MONOTONIC_USEC lets systemd (253+, Type=notify-reload) tell this reload from an older one.
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    const auto usec = static_cast<unsigned long long>(now.tv_sec) * 1000000ULL +
                      static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
    send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void notify_stopping() {
    send("STOPPING=1");
}

void notify_status(std::string_view text) {
    // One line: a newline would start another assignment.
    std::string line(text);
    for (char& c : line) {
        if (c == '\n') {
            c = ' ';
        }
    }
    send("STATUS=" + line);
}

}  // namespace datapump::daemon::service
