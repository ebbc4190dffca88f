//! The UI's HTML: escaping, the page frame, tables and form fields, as plain functions writing
//! into a `String` (no template engine: the pages are few and small, and a function per piece
//! keeps escaping in one place).

use std::fmt::Write;

/// Text escaped for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment or query value percent-encoded: everything but `[A-Za-z0-9._:-]` (keys keep
/// their `:`, which the API's tenant check reads).
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"._:-".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The sections of the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Tenants,
    Networks,
    Groups,
    Policies,
    Netprofiles,
    Endpoints,
    Global,
    None,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Overview, "/ui/", "Overview"),
    (Nav::Tenants, "/ui/tenants", "Tenants"),
    (Nav::Networks, "/ui/networks", "Networks"),
    (Nav::Groups, "/ui/groups", "Groups"),
    (Nav::Policies, "/ui/policies", "Policies"),
    (Nav::Netprofiles, "/ui/netprofiles", "Profiles"),
    (Nav::Endpoints, "/ui/endpoints", "Endpoints"),
    (Nav::Global, "/ui/global", "Global"),
];

/// Who is logged in, for the page header; `None` without authentication.
pub struct Header<'a> {
    pub user: Option<&'a str>,
    pub csrf: &'a str,
}

/// A whole page: head, skip link, header with the user and logout, navigation, `body` in main.
pub fn page(title: &str, nav: Nav, header: Option<&Header>, body: &str) -> String {
    let mut h = String::with_capacity(body.len() + 2048);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{} · Contiv</title><link rel=\"stylesheet\" href=\"/ui/style.css\">\
<script src=\"/ui/live.js\" defer></script></head><body>\
<a class=\"skip\" href=\"#main\">Skip to content</a><header><span class=\"brand\">Contiv</span>",
        esc(title)
    );
    if let Some(hd) = header {
        h.push_str("<nav aria-label=\"Sections\"><ul>");
        for (n, href, label) in NAV {
            let current = if *n == nav {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(h, "<li><a href=\"{href}\"{current}>{label}</a></li>");
        }
        h.push_str("</ul></nav>");
        if let Some(user) = hd.user {
            let _ = write!(
                h,
                "<form class=\"logout\" method=\"post\" action=\"/ui/logout\">{}\
<span id=\"who\">{}</span> <button type=\"submit\">Log out</button></form>",
                csrf_input(hd.csrf),
                esc(user)
            );
        }
    }
    let _ = write!(
        h,
        "</header><main id=\"main\" tabindex=\"-1\"><h1>{}</h1>{body}</main></body></html>",
        esc(title)
    );
    h
}

pub fn csrf_input(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"_csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A table: a caption, the column heads, and rows of cells already HTML. Wrapped so that a
/// narrow screen scrolls the table rather than the page.
pub fn table(caption: &str, heads: &[&str], rows: &[Vec<String>]) -> String {
    let mut h = String::with_capacity(rows.len() * 200 + 256);
    let _ = write!(
        h,
        "<div class=\"scroll\"><table><caption>{}</caption><thead><tr>",
        esc(caption)
    );
    for head in heads {
        let _ = write!(h, "<th scope=\"col\">{}</th>", esc(head));
    }
    h.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            h,
            "<tr><td colspan=\"{}\" class=\"empty\">none</td></tr>",
            heads.len()
        );
    }
    for row in rows {
        h.push_str("<tr>");
        for cell in row {
            h.push_str("<td>");
            h.push_str(cell);
            h.push_str("</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div>");
    h
}

/// A link.
pub fn a(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// A delete button: a POST form with the CSRF token, which returns to `back`.
pub fn delete_button(coll: &str, key: &str, csrf: &str, back: &str) -> String {
    format!(
        "<form class=\"inline\" method=\"post\" action=\"/ui/delete/{}/{}\">{}\
<input type=\"hidden\" name=\"_back\" value=\"{}\">\
<button type=\"submit\" class=\"danger\" aria-label=\"Delete {}\">Delete</button></form>",
        url(coll),
        url(key),
        csrf_input(csrf),
        esc(back),
        esc(key)
    )
}

/// An error box, announced to screen readers.
pub fn alert(message: &str) -> String {
    format!(
        "<p class=\"error\" role=\"alert\" id=\"form-error\">{}</p>",
        esc(message)
    )
}

pub const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f23;background:#f6f7f9}
a{color:#0b57d0}
a:focus,button:focus,input:focus,select:focus,main:focus{outline:3px solid #f9a825;outline-offset:1px}
.skip{position:absolute;left:-999px;top:0;background:#fff;padding:.5em}
.skip:focus{left:.5em}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.5em 1em;padding:.5em 1em;background:#12263f;color:#fff}
header a{color:#dbe7ff;text-decoration:none;padding:.2em .4em;border-radius:3px}
header a[aria-current=page]{background:#2f5d9a;color:#fff}
.brand{font-weight:700;font-size:1.1em}
nav ul{display:flex;flex-wrap:wrap;gap:.2em;margin:0;padding:0;list-style:none}
.logout{margin-left:auto;display:flex;align-items:center;gap:.5em}
main{padding:1em;max-width:1400px}
h1{font-size:1.4em;margin:.2em 0 .6em}
h2{font-size:1.15em;margin:1.2em 0 .4em}
.scroll{overflow-x:auto;margin-bottom:1em}
table{border-collapse:collapse;width:100%;background:#fff}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#eef1f4}
td.empty{color:#666;font-style:italic}
.num{text-align:right;font-variant-numeric:tabular-nums}
form.inline{display:inline}
form.edit{background:#fff;border:1px solid #d0d7de;padding:1em;max-width:46em}
.field{margin-bottom:.8em}
.field label{display:block;font-weight:600}
.field input,.field select{width:100%;max-width:30em;padding:.35em;font:inherit;border:1px solid #8c959f;border-radius:3px}
.field input[readonly]{background:#eef1f4}
.field .help{color:#555;font-size:.9em}
.field .error,.error{color:#b00020;font-weight:600}
.field.invalid input,.field.invalid select{border-color:#b00020;border-width:2px}
button,.button{font:inherit;padding:.3em .8em;border:1px solid #0b57d0;background:#0b57d0;color:#fff;border-radius:3px;cursor:pointer;text-decoration:none;display:inline-block}
button.danger{background:#fff;color:#b00020;border-color:#b00020;padding:.1em .5em}
.actions{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;margin:.5em 0}
.search{display:flex;flex-wrap:wrap;gap:.5em;align-items:flex-end;margin-bottom:1em}
.search .field{margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(9em,1fr));gap:.6em;margin-bottom:1em}
.card{background:#fff;border:1px solid #d0d7de;padding:.6em;border-radius:4px}
.card b{display:block;font-size:1.5em}
.muted{color:#555}
@media (max-width:600px){main{padding:.5em}header{padding:.5em}th,td{padding:.25em .3em}.logout{margin-left:0}}
"#;

/// Live lists: the page listens to `/ui/events` (the API's watch stream, filtered for the user)
/// and, a moment after a change, fetches itself again and swaps the `[data-live]` region,
/// unless the keyboard focus is inside it (the user is acting there; the next change retries).
pub const JS: &str = r#"(function(){
var live=document.querySelector('[data-live]');
if(!live||!window.EventSource||!window.fetch)return;
var timer=null,es=new EventSource('/ui/events');
function refresh(){
 if(live.contains(document.activeElement)){timer=setTimeout(refresh,1000);return;}
 fetch(location.href,{credentials:'same-origin'}).then(function(r){return r.ok?r.text():null}).then(function(t){
  if(!t)return;
  var d=new DOMParser().parseFromString(t,'text/html').querySelector('[data-live]');
  if(d){live.innerHTML=d.innerHTML;live.setAttribute('data-refreshed',String(Date.now()));}
 });
}
es.onmessage=function(){clearTimeout(timer);timer=setTimeout(refresh,250);};
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url("A:n1"), "A:n1");
        assert_eq!(url("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn tables_say_none_when_empty() {
        let t = table("Tenants", &["Name"], &[]);
        assert!(t.contains("<caption>Tenants</caption>") && t.contains(">none<"));
    }
}
