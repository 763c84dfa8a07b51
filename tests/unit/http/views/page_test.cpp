#include "datapump/http/views.hpp"

#include <gtest/gtest.h>

namespace datapump::http {
namespace {

bool contains(std::string_view text, std::string_view part) {
    return text.find(part) != std::string_view::npos;
}

TEST(status_page, has_the_stable_selectors_and_relative_api_urls) {
    const std::string_view page = status_page_html();
    ASSERT_TRUE(page.starts_with("<!DOCTYPE html>"));
    for (const char* part : {
             R"(<tbody id="streams">)", R"(id="cache")", R"(id="server")", R"(id="error")",
             "tr.dataset.streamId = id", R"(tr[data-stream-id=)",
             R"(<button class="pause" data-stream-id="${sid}">Pause</button>)",
             R"(<button class="resume" data-stream-id="${sid}">Resume</button>)",
             R"(<input class="offset" data-stream-id="${sid}")",
             R"(<button class="seek" data-stream-id="${sid}">Seek</button>)",
             "'api/streams', 'api/status'", "api/streams/${encodeURIComponent(id)}/${action}${query}",
             "method: 'POST'", "'?offset='", "setTimeout(poll, 1000)", "Cannot reach the datapump API",
             "Hit ratio", "Loans outstanding", "Uptime", "Send path", "Admission capacity", "Refusals",
             "Paced on rt", "rt refusals", "rt deadline misses",
             "</html>",
         }) {
        EXPECT_TRUE(contains(page, part)) << part;
    }
}

TEST(status_page, self_contained_and_short) {
    const std::string_view page = status_page_html();
    for (const char* external : {"http://", "https://", "<link", "src=", "@import", "/_datapump/api"}) {
        EXPECT_FALSE(contains(page, external)) << external;
    }
    std::size_t lines = 0;
    for (const char c : page) {
        lines += c == '\n' ? 1U : 0U;
    }
    EXPECT_LT(lines, 250U);
}

TEST(directory_listing, escapes_names_and_encodes_hrefs) {
    const std::string html = directory_listing_html(
        "/media/a b/", {{"<script>alert(1)</script>.mp4", 2048}, {"sub dir/", 0}, {"100%&\"x'.txt", 5},
                        {"caf\xc3\xa9.txt", 1536 * 1024}});
    EXPECT_FALSE(contains(html, "<script>"));
    EXPECT_TRUE(contains(html, "&lt;script&gt;alert(1)&lt;/script&gt;.mp4</a>")) << html;
    EXPECT_TRUE(contains(html, R"(href="/media/a%20b/%3Cscript%3Ealert%281%29%3C%2Fscript%3E.mp4")")) << html;
    EXPECT_TRUE(contains(html, R"(href="/media/a%20b/sub%20dir/">sub dir/</a>)")) << html;
    EXPECT_TRUE(contains(html, R"(href="/media/a%20b/100%25%26%22x%27.txt">100%&amp;&quot;x&#39;.txt</a>)")) << html;
    EXPECT_TRUE(contains(html, R"(href="/media/a%20b/caf%C3%A9.txt")")) << html;
    EXPECT_TRUE(contains(html, R"(<a href="/media/">../</a>)")) << html;
    EXPECT_TRUE(contains(html, "<title>Index of /media/a b/</title>")) << html;
    EXPECT_TRUE(contains(html, "2.0 KiB")) << html;
    EXPECT_TRUE(contains(html, "1.5 MiB")) << html;
    EXPECT_TRUE(contains(html, "5 B")) << html;
}

TEST(directory_listing, root_and_paths_without_trailing_slash) {
    std::string html = directory_listing_html("/", {{"a.txt", 1}});
    EXPECT_FALSE(contains(html, "../"));
    EXPECT_TRUE(contains(html, R"(href="/a.txt")")) << html;
    html = directory_listing_html("/x/<y>", {{"a.txt", 1}});
    EXPECT_TRUE(contains(html, R"(href="/x/%3Cy%3E/a.txt")")) << html;
    EXPECT_TRUE(contains(html, R"(<a href="/x/">../</a>)")) << html;
    EXPECT_TRUE(contains(html, "Index of /x/&lt;y&gt;")) << html;
}

}  // namespace
}  // namespace datapump::http
