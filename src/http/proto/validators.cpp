#include "datapump/http/proto/validators.hpp"

#include "text.hpp"
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>

namespace datapump::http {

namespace {

constexpr std::array<std::string_view, 7> day_names = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> long_day_names = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                            "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> month_names = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

constexpr std::int64_t seconds_per_day = 86400;
constexpr std::int64_t min_time = -62135596800;  // 0001-01-01T00:00:00Z
constexpr std::int64_t max_time = 253402300799;  // 9999-12-31T23:59:59Z

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, exact for all years).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2 ? 1 : 0;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

struct civil {
    std::int64_t year;
    unsigned month;
    unsigned day;
};

civil civil_from_days(std::int64_t z) {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2 ? 1 : 0);
    return {y, m, d};
}

bool is_leap(std::int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

unsigned days_in_month(std::int64_t y, unsigned m) {
    constexpr std::array<unsigned, 12> days = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

void put_digits(std::string& out, std::uint64_t value, std::size_t width) {
    std::array<char, 20> buf{};
    std::size_t n = 0;
    do {
        buf[n++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value != 0 && n < buf.size());
    for (std::size_t i = n; i < width; ++i) {
        out.push_back('0');
    }
    while (n > 0) {
        out.push_back(buf[--n]);
    }
}

// A cursor over the date text; every read either matches exactly or fails the parse.
class reader {
public:
    explicit reader(std::string_view text) : text_(text) {}

    bool literal(std::string_view s) {
        if (text_.substr(pos_, s.size()) != s) {
            return false;
        }
        pos_ += s.size();
        return true;
    }

    // Exactly `count` digits.
    std::optional<unsigned> digits(std::size_t count) {
        if (text_.size() - pos_ < count) {
            return std::nullopt;
        }
        unsigned value = 0;
        for (std::size_t i = 0; i < count; ++i) {
            const char c = text_[pos_ + i];
            if (c < '0' || c > '9') {
                return std::nullopt;
            }
            value = value * 10 + static_cast<unsigned>(c - '0');
        }
        pos_ += count;
        return value;
    }

    template <std::size_t N>
    std::optional<unsigned> one_of(const std::array<std::string_view, N>& names) {
        for (std::size_t i = 0; i < N; ++i) {
            if (literal(names[i])) {
                return static_cast<unsigned>(i);
            }
        }
        return std::nullopt;
    }

    [[nodiscard]] bool at_end() const { return pos_ == text_.size(); }

private:
    std::string_view text_;
    std::size_t pos_ = 0;
};

struct time_of_day {
    unsigned hour;
    unsigned minute;
    unsigned second;
};

// "hh:mm:ss"
std::optional<time_of_day> read_time(reader& r) {
    const auto h = r.digits(2);
    if (!h || !r.literal(":")) {
        return std::nullopt;
    }
    const auto m = r.digits(2);
    if (!m || !r.literal(":")) {
        return std::nullopt;
    }
    const auto s = r.digits(2);
    if (!s || *h > 23 || *m > 59 || *s > 60) {
        return std::nullopt;
    }
    return time_of_day{*h, *m, *s};
}

std::optional<std::int64_t> to_unix(std::int64_t year, unsigned month, unsigned day, time_of_day t) {
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) {
        return std::nullopt;
    }
    return days_from_civil(year, month, day) * seconds_per_day + static_cast<std::int64_t>(t.hour) * 3600 +
           static_cast<std::int64_t>(t.minute) * 60 + static_cast<std::int64_t>(t.second);
}

// RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the previous century.
std::int64_t expand_two_digit_year(unsigned yy) {
    const auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    const std::int64_t days = std::chrono::floor<std::chrono::days>(now).time_since_epoch().count();
    const std::int64_t this_year = civil_from_days(days).year;
    std::int64_t year = this_year - this_year % 100 + static_cast<std::int64_t>(yy);
    if (year > this_year + 50) {
        year -= 100;
    } else if (year <= this_year - 50) {
        year += 100;
    }
    return year;
}

// "Sun, 06 Nov 1994 08:49:37 GMT"
std::optional<std::int64_t> parse_imf_fixdate(std::string_view text) {
    reader r(text);
    if (!r.one_of(day_names) || !r.literal(", ")) {
        return std::nullopt;
    }
    const auto day = r.digits(2);
    if (!day || !r.literal(" ")) {
        return std::nullopt;
    }
    const auto month = r.one_of(month_names);
    if (!month || !r.literal(" ")) {
        return std::nullopt;
    }
    const auto year = r.digits(4);
    if (!year || !r.literal(" ")) {
        return std::nullopt;
    }
    const auto t = read_time(r);
    if (!t || !r.literal(" GMT") || !r.at_end()) {
        return std::nullopt;
    }
    return to_unix(*year, *month + 1, *day, *t);
}

// "Sunday, 06-Nov-94 08:49:37 GMT"
std::optional<std::int64_t> parse_rfc850(std::string_view text) {
    reader r(text);
    if (!r.one_of(long_day_names) || !r.literal(", ")) {
        return std::nullopt;
    }
    const auto day = r.digits(2);
    if (!day || !r.literal("-")) {
        return std::nullopt;
    }
    const auto month = r.one_of(month_names);
    if (!month || !r.literal("-")) {
        return std::nullopt;
    }
    const auto yy = r.digits(2);
    if (!yy || !r.literal(" ")) {
        return std::nullopt;
    }
    const auto t = read_time(r);
    if (!t || !r.literal(" GMT") || !r.at_end()) {
        return std::nullopt;
    }
    return to_unix(expand_two_digit_year(*yy), *month + 1, *day, *t);
}

// "Sun Nov  6 08:49:37 1994"
std::optional<std::int64_t> parse_asctime(std::string_view text) {
    reader r(text);
    if (!r.one_of(day_names) || !r.literal(" ")) {
        return std::nullopt;
    }
    const auto month = r.one_of(month_names);
    if (!month || !r.literal(" ")) {
        return std::nullopt;
    }
    std::optional<unsigned> day;
    if (r.literal(" ")) {
        day = r.digits(1);
    } else {
        day = r.digits(2);
    }
    if (!day || !r.literal(" ")) {
        return std::nullopt;
    }
    const auto t = read_time(r);
    if (!t || !r.literal(" ")) {
        return std::nullopt;
    }
    const auto year = r.digits(4);
    if (!year || !r.at_end()) {
        return std::nullopt;
    }
    return to_unix(*year, *month + 1, *day, *t);
}

using text::is_ows;

std::string_view strip_weak(std::string_view tag) {
    if (tag.starts_with("W/")) {
        tag.remove_prefix(2);
    }
    return tag;
}

// If-None-Match: "*" or a list of entity-tags, compared weakly with `etag`. Tags may contain
// commas, so the list is read tag by tag; a malformed element ends the list without a match.
bool none_match_list_matches(std::string_view list, std::string_view etag) {
    const std::string_view ours = strip_weak(etag);
    std::size_t pos = 0;
    while (true) {
        while (pos < list.size() && (is_ows(list[pos]) || list[pos] == ',')) {
            ++pos;
        }
        if (pos == list.size()) {
            return false;
        }
        if (list[pos] == '*') {
            return true;
        }
        if (list.substr(pos, 2) == "W/") {
            pos += 2;
        }
        if (pos >= list.size() || list[pos] != '"') {
            return false;
        }
        const std::size_t close = list.find('"', pos + 1);
        if (close == std::string_view::npos) {
            return false;
        }
        if (list.substr(pos, close - pos + 1) == ours) {
            return true;
        }
        pos = close + 1;
    }
}

bool if_range_matches(std::string_view value, std::string_view etag, std::int64_t mtime_seconds) {
    if (value.starts_with("W/")) {
        return false;  // a weak tag never matches for If-Range
    }
    if (value.starts_with('"')) {
        return !etag.starts_with("W/") && value == etag;
    }
    const auto date = parse_http_date(value);
    return date && *date == mtime_seconds;
}

}  // namespace

std::string make_etag(std::uint64_t inode, std::uint64_t size, std::int64_t mtime_ns) {
    return fmt::format("\"{:x}-{:x}-{:x}\"", inode, size, static_cast<std::uint64_t>(mtime_ns));
}

std::string http_date(std::int64_t unix_seconds) {
    const std::int64_t t = std::clamp(unix_seconds, min_time, max_time);
    std::int64_t days = t / seconds_per_day;
    std::int64_t secs = t % seconds_per_day;
    if (secs < 0) {
        secs += seconds_per_day;
        --days;
    }
    const civil date = civil_from_days(days);
    const auto weekday = static_cast<std::size_t>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday
    std::string out;
    out.reserve(29);
    out += day_names[weekday];
    out += ", ";
    put_digits(out, date.day, 2);
    out += ' ';
    out += month_names[date.month - 1];
    out += ' ';
    put_digits(out, static_cast<std::uint64_t>(date.year), 4);
    out += ' ';
    put_digits(out, static_cast<std::uint64_t>(secs / 3600), 2);
    out += ':';
    put_digits(out, static_cast<std::uint64_t>(secs / 60 % 60), 2);
    out += ':';
    put_digits(out, static_cast<std::uint64_t>(secs % 60), 2);
    out += " GMT";
    return out;
}

std::optional<std::int64_t> parse_http_date(std::string_view text) {
    if (auto t = parse_imf_fixdate(text)) {
        return t;
    }
    if (auto t = parse_rfc850(text)) {
        return t;
    }
    return parse_asctime(text);
}

conditional_result evaluate_conditions(const request& req, std::string_view etag, std::int64_t mtime_seconds) {
    conditional_result result;
    const bool cacheable = req.verb == method::get || req.verb == method::head;
    bool has_none_match = false;
    for (const auto& [name, value] : req.headers) {
        if (name != "if-none-match") {
            continue;
        }
        has_none_match = true;
        if (cacheable && none_match_list_matches(value, etag)) {
            result.not_modified = true;
        }
    }
    if (!has_none_match && cacheable) {
        if (const std::string* since = req.header("if-modified-since")) {
            const auto date = parse_http_date(*since);
            if (date && mtime_seconds <= *date) {
                result.not_modified = true;
            }
        }
    }
    if (const std::string* if_range = req.header("if-range")) {
        result.use_range = if_range_matches(*if_range, etag, mtime_seconds);
    }
    return result;
}

}  // namespace datapump::http
