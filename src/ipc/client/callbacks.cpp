// A command's callbacks in the seed's order, the same for every path (slot, backup, in-process):
// prepare before the command is sent, post (or the default copies) after it completed.
#include "client_impl.hpp"

#include <cstring>

namespace datapump::ipc {

reply finish_command(const callbacks& cb, std::span<const std::byte> input, std::span<const std::byte> input_area,
                     std::span<std::byte> output, std::span<const std::byte> output_area, std::int32_t status) {
    if (cb.input_post != nullptr) {
        cb.input_post(cb.context, input, input_area);
    }
    if (cb.output_post != nullptr) {
        cb.output_post(cb.context, output, output_area);
    } else if (!output_area.empty() && output_area.data() != output.data()) {
        std::memcpy(output.data(), output_area.data(), output_area.size());
    }
    reply r;
    r.status = status;
    r.output_len = static_cast<std::uint32_t>(output_area.size());
    return r;
}

void prepare_areas(const callbacks& cb, std::span<const std::byte> input, std::span<std::byte> input_area,
                   std::span<std::byte> output, std::span<std::byte> output_area) {
    if (cb.input_prepare != nullptr) {
        cb.input_prepare(cb.context, input, input_area);
    } else if (!input.empty()) {
        std::memcpy(input_area.data(), input.data(), input.size());
    }
    if (cb.output_prepare != nullptr) {
        cb.output_prepare(cb.context, output, output_area);
    }
}

void complete_async(const callbacks& cb, outcome o) { cb.completion(cb.context, o); }

}  // namespace datapump::ipc
