//! Bar charts drawn on the server as inline SVG (no script; presentation attributes only, no
//! `style`, which the Content-Security-Policy forbids inline). A chart is an image named by its
//! `<title>` (`role="img"`, `aria-labelledby`); its page shows the same numbers in a table
//! beside it. A bar whose count is withheld (statistical secrecy) has no length and says so.

use std::fmt::Write as _;

/// One bar: its label and its count, `None` when the count is withheld.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub label: String,
    pub value: Option<i64>,
}

/// Width of the drawing, in user units (it scales down with the page).
const WIDTH: i64 = 640;
/// Where bars start: the labels are right-aligned before.
const LABEL_END: i64 = 230;
const BAR_START: i64 = 240;
/// The longest bar (the largest count), leaving room for its number.
const BAR_MAX: i64 = 330;
const ROW: i64 = 28;
const BAR_HEIGHT: i64 = 18;
const PAD: i64 = 8;

/// `s` escaped for SVG text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An id usable in `id` and `aria-labelledby`: `[a-z0-9-]`, anything else becomes `-`.
fn safe_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The length of a bar of `value` when the largest shown count is `max`: proportional, at least
/// one unit for a count above zero, none for zero.
pub fn length(value: i64, max: i64) -> i64 {
    if value <= 0 || max <= 0 {
        return 0;
    }
    let v = value.min(max);
    ((v * BAR_MAX + max / 2) / max).max(1)
}

/// A horizontal bar chart as an `<svg>` element. `id` names the chart's title (`{id}-titre`);
/// `withheld` is what a bar whose count is withheld shows instead of a number; an empty chart
/// says « Aucune donnée ».
pub fn bars(id: &str, title: &str, bars: &[Bar], withheld: &str) -> String {
    let id = safe_id(id);
    let rows = bars.len().max(1) as i64;
    let height = PAD * 2 + rows * ROW;
    let max = bars.iter().filter_map(|b| b.value).max().unwrap_or(0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"graphique\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         aria-labelledby=\"{id}-titre\" font-family=\"system-ui, sans-serif\" font-size=\"14\">\
         <title id=\"{id}-titre\">{}</title>",
        escape(title)
    );
    if bars.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{BAR_START}\" y=\"{}\" fill=\"#3a3a3a\">Aucune donnée</text>",
            PAD + ROW / 2 + 5
        );
    }
    // The axis the bars start from.
    let _ = write!(
        svg,
        "<line x1=\"{x}\" y1=\"{PAD}\" x2=\"{x}\" y2=\"{y2}\" stroke=\"#3a3a3a\" stroke-width=\"1\"/>",
        x = BAR_START - 1,
        y2 = height - PAD
    );
    for (i, bar) in bars.iter().enumerate() {
        let top = PAD + i as i64 * ROW + (ROW - BAR_HEIGHT) / 2;
        let baseline = top + BAR_HEIGHT / 2 + 5;
        let _ = write!(
            svg,
            "<text x=\"{LABEL_END}\" y=\"{baseline}\" text-anchor=\"end\" fill=\"#161616\">{}</text>",
            escape(&bar.label)
        );
        match bar.value {
            Some(v) => {
                let w = length(v, max);
                if w > 0 {
                    let _ = write!(
                        svg,
                        "<rect x=\"{BAR_START}\" y=\"{top}\" width=\"{w}\" height=\"{BAR_HEIGHT}\" fill=\"#000091\"/>"
                    );
                }
                let _ = write!(
                    svg,
                    "<text x=\"{}\" y=\"{baseline}\" fill=\"#161616\">{v}</text>",
                    BAR_START + w + 6
                );
            }
            None => {
                let _ = write!(
                    svg,
                    "<text x=\"{}\" y=\"{baseline}\" fill=\"#3a3a3a\" font-style=\"italic\">{}</text>",
                    BAR_START + 6,
                    escape(withheld)
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, value: Option<i64>) -> Bar {
        Bar {
            label: label.into(),
            value,
        }
    }

    #[test]
    fn labels_and_titles_are_escaped() {
        let svg = bars(
            "x\"><script>",
            "<b>titre</b> & \"co\"",
            &[bar("<script>alert('x')</script>", Some(3))],
            "secret",
        );
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(svg.contains("&lt;b&gt;titre&lt;/b&gt; &amp; &quot;co&quot;"));
        assert!(
            svg.contains("aria-labelledby=\"x---script--titre\""),
            "{svg}"
        );
        assert!(svg.contains("<title id=\"x---script--titre\">"));
        assert!(!svg.contains("style="));
        assert_eq!(escape("a\u{0}b\nc"), "a b c");
    }

    #[test]
    fn bars_are_proportional_to_the_largest_count() {
        assert_eq!(length(10, 10), BAR_MAX);
        assert_eq!(length(5, 10), BAR_MAX / 2);
        // A small count still shows; zero shows nothing.
        assert_eq!(length(1, 100_000), 1);
        assert_eq!(length(0, 10), 0);
        assert_eq!(length(3, 0), 0);
        let svg = bars(
            "c",
            "t",
            &[bar("a", Some(20)), bar("b", Some(10))],
            "secret",
        );
        assert!(svg.contains(&format!("width=\"{BAR_MAX}\" height=\"{BAR_HEIGHT}\"")));
        assert!(svg.contains(&format!(
            "width=\"{}\" height=\"{BAR_HEIGHT}\"",
            BAR_MAX / 2
        )));
        assert_eq!(svg.matches("<rect").count(), 2);
    }

    #[test]
    fn zero_empty_and_withheld_counts() {
        let svg = bars("c", "t", &[bar("zéro", Some(0))], "secret");
        assert!(!svg.contains("<rect"), "a zero count draws no bar");
        assert!(svg.contains(">0</text>"));
        let svg = bars("c", "t", &[], "secret");
        assert!(svg.contains("Aucune donnée"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // A withheld count: no bar, no number, the words instead; others still scale.
        let svg = bars(
            "c",
            "t",
            &[bar("caché", None), bar("vu", Some(7))],
            "secret statistique",
        );
        assert_eq!(svg.matches("<rect").count(), 1);
        assert!(svg.contains(">secret statistique</text>"));
        assert!(svg.contains(&format!("width=\"{BAR_MAX}\"")));
        // All withheld: nothing to scale by, nothing drawn.
        let svg = bars("c", "t", &[bar("a", None), bar("b", None)], "s");
        assert!(!svg.contains("<rect"));
    }
}
