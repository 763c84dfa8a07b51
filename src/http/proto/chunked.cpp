#include "datapump/http/proto/chunked.hpp"

#include "text.hpp"
#include "datapump/base/check.hpp"

namespace datapump::http {

namespace {

constexpr std::string_view reason_size_missing = "chunk size missing (a size line must start with a hex digit)";
constexpr std::string_view reason_size_digits = "chunk size longer than 16 hex digits";
constexpr std::string_view reason_size_byte = "invalid byte after the chunk size";
constexpr std::string_view reason_size_ows = "whitespace after the chunk size not followed by ';'";
constexpr std::string_view reason_extension_byte = "control byte in a chunk extension";
constexpr std::string_view reason_line_too_long = "chunk size line longer than the limit";
constexpr std::string_view reason_bare_lf = "LF not preceded by CR in the chunk framing";
constexpr std::string_view reason_bare_cr = "CR not followed by LF in the chunk framing";
constexpr std::string_view reason_data_end = "chunk data not followed by CRLF";
constexpr std::string_view reason_body_too_large = "request body larger than the limit";
constexpr std::string_view reason_trailer_name = "trailer field line without a token before its ':'";
constexpr std::string_view reason_trailer_value = "control byte in a trailer field value";
constexpr std::string_view reason_trailers_too_large = "trailer section larger than the limit";
constexpr std::string_view reason_framing_overhead = "chunk framing out of proportion to the data";

// Sixteen hex digits are 64 bits: the size cannot overflow, whatever the digits are.
constexpr std::size_t max_size_digits = 16;
static_assert(max_size_digits * 4 == sizeof(std::uint64_t) * 8);

using text::is_ows;

// tchar (RFC 9110 §5.6.2).
bool is_tchar(char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
            return true;
        default:
            return false;
    }
}

// A control byte (0x00-0x1F, DEL) other than HTAB; obs-text (0x80-0xFF) is not one.
bool is_forbidden_ctl(char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
}

}  // namespace

chunked_decoder::chunked_decoder(chunked_limits limits) : limits_(limits) {}

std::size_t chunked_decoder::feed(std::span<const char> bytes) {
    DP_CHECK(state_ != state::data);
    if (state_ != state::framing) {
        return 0;
    }
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        switch (take_byte(bytes[i])) {
            case step::next:
                break;
            case step::stop:
                return i + 1;
            case step::fail:
                return i;
        }
    }
    return bytes.size();
}

void chunked_decoder::took_data(std::uint64_t n) {
    DP_CHECK(state_ == state::data && n > 0 && n <= data_left_);
    data_left_ -= n;
    body_bytes_ += n;
    if (data_left_ == 0) {
        state_ = state::framing;
        phase_ = phase::data_cr;
    }
}

chunked_decoder::step chunked_decoder::take_byte(char c) {
    // Saturating: limits near 2^64 mean "no limit".
    const std::uint64_t per_data = body_bytes_ > UINT64_MAX / (limits_.max_framing_per_data_byte + 1)
                                       ? UINT64_MAX
                                       : body_bytes_ * limits_.max_framing_per_data_byte;
    const std::uint64_t allowed =
        per_data > UINT64_MAX - limits_.max_framing_base ? UINT64_MAX : per_data + limits_.max_framing_base;
    if (framing_bytes_ >= allowed) {
        return fail_with(400, reason_framing_overhead);
    }
    ++framing_bytes_;
    switch (phase_) {
        case phase::size:
        case phase::size_ows:
        case phase::extension:
            return size_line_byte(c);
        case phase::size_lf:
            return c == '\n' ? end_of_size_line() : fail_with(400, reason_bare_cr);
        case phase::data_cr:
            if (c != '\r') {
                return fail_with(400, reason_data_end);
            }
            phase_ = phase::data_lf;
            return step::next;
        case phase::data_lf:
            if (c != '\n') {
                return fail_with(400, reason_data_end);
            }
            phase_ = phase::size;
            return step::next;
        case phase::final_lf:
            if (c != '\n') {
                return fail_with(400, reason_bare_cr);
            }
            state_ = state::done;
            return step::stop;
        case phase::trailer_start:
            if (c == '\r') {
                phase_ = phase::final_lf;  // the empty line: not part of the trailer section
                return step::next;
            }
            return trailer_byte(c);
        case phase::trailer_name:
        case phase::trailer_value:
        case phase::trailer_lf:
            return trailer_byte(c);
    }
    internal_error("chunked_decoder: unknown phase");
}

chunked_decoder::step chunked_decoder::size_line_byte(char c) {
    if (c == '\r') {
        if (phase_ == phase::size && digits_ == 0) {
            return fail_with(400, reason_size_missing);
        }
        if (phase_ == phase::size_ows) {
            return fail_with(400, reason_size_ows);
        }
        phase_ = phase::size_lf;
        return step::next;
    }
    if (c == '\n') {
        return fail_with(400, reason_bare_lf);
    }
    // The CR that ends the line does not count: a line of exactly max_line bytes is fine.
    if (line_bytes_ == limits_.max_line) {
        return fail_with(400, reason_line_too_long);
    }
    ++line_bytes_;
    switch (phase_) {
        case phase::size: {
            const int value = text::hex_value(c);
            if (value >= 0) {
                if (digits_ == max_size_digits) {
                    return fail_with(400, reason_size_digits);
                }
                size_ = (size_ << 4U) | static_cast<std::uint64_t>(value);
                ++digits_;
                return step::next;
            }
            if (digits_ == 0) {
                return fail_with(400, reason_size_missing);
            }
            if (is_ows(c)) {
                phase_ = phase::size_ows;
                return step::next;
            }
            if (c == ';') {
                phase_ = phase::extension;
                return step::next;
            }
            return fail_with(400, reason_size_byte);
        }
        case phase::size_ows:
            if (is_ows(c)) {
                return step::next;
            }
            if (c == ';') {
                phase_ = phase::extension;
                return step::next;
            }
            return fail_with(400, reason_size_ows);
        default:  // phase::extension
            return is_forbidden_ctl(c) ? fail_with(400, reason_extension_byte) : step::next;
    }
}

chunked_decoder::step chunked_decoder::end_of_size_line() {
    const std::uint64_t size = size_;
    size_ = 0;
    digits_ = 0;
    line_bytes_ = 0;
    if (size == 0) {
        phase_ = phase::trailer_start;
        return step::next;
    }
    // body_bytes_ <= max_body always holds, and no data is outstanding here.
    if (size > limits_.max_body - body_bytes_) {
        return fail_with(413, reason_body_too_large);
    }
    data_left_ = size;
    state_ = state::data;
    phase_ = phase::data_cr;  // where took_data() leaves it once the chunk is in
    return step::stop;
}

chunked_decoder::step chunked_decoder::trailer_byte(char c) {
    if (trailer_bytes_ == limits_.max_trailer_bytes) {
        return fail_with(413, reason_trailers_too_large);
    }
    ++trailer_bytes_;
    switch (phase_) {
        case phase::trailer_start:
            if (!is_tchar(c)) {
                return fail_with(400, c == '\n' ? reason_bare_lf : reason_trailer_name);
            }
            phase_ = phase::trailer_name;
            return step::next;
        case phase::trailer_name:
            if (c == ':') {
                phase_ = phase::trailer_value;
                return step::next;
            }
            if (!is_tchar(c)) {
                return fail_with(400, c == '\n' ? reason_bare_lf : reason_trailer_name);
            }
            return step::next;
        case phase::trailer_value:
            if (c == '\r') {
                phase_ = phase::trailer_lf;
                return step::next;
            }
            if (c == '\n') {
                return fail_with(400, reason_bare_lf);
            }
            return is_forbidden_ctl(c) ? fail_with(400, reason_trailer_value) : step::next;
        default:  // phase::trailer_lf
            if (c != '\n') {
                return fail_with(400, reason_bare_cr);
            }
            phase_ = phase::trailer_start;
            return step::next;
    }
}

chunked_decoder::step chunked_decoder::fail_with(int status, std::string_view reason) {
    state_ = state::failed;
    status_ = status;
    reason_ = reason;
    return step::fail;
}

}  // namespace datapump::http
