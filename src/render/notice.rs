//! Notices by e-mail as text and HTML (askama, the web pages' engine): a title, a few lines
//! saying what happened, the link to the page where a signed-in person sees it, and the footer
//! that says the message carries no case content. The caller writes the lines; nothing of a case
//! but a reference belongs in them.

use askama::Template;

/// What a notice says, in French.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub cellule_name: String,
    pub title: String,
    pub lines: Vec<String>,
    pub link: String,
    pub link_label: String,
    pub preferences_link: String,
}

#[derive(Template)]
#[template(path = "notice_mail.txt", escape = "none")]
struct Text<'a> {
    n: &'a Notice,
}

#[derive(Template)]
#[template(path = "notice_mail.html")]
struct Html<'a> {
    n: &'a Notice,
}

/// The plain-text part.
pub fn text(n: &Notice) -> Result<String, askama::Error> {
    Text { n }.render()
}

/// The HTML part (every value escaped).
pub fn html(n: &Notice) -> Result<String, askama::Error> {
    Html { n }.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice {
            cellule_name: "Cellule <Perpignan>".into(),
            title: "Invitation à la séance".into(),
            lines: vec!["Première ligne.".into(), "PER-2026-0001".into()],
            link: "https://cellule.example/c/perpignan?a=1&b=2".into(),
            link_label: "Voir la séance".into(),
            preferences_link: "https://cellule.example/c/perpignan/avis".into(),
        }
    }

    #[test]
    fn both_parts_say_the_same_and_html_escapes() {
        let n = notice();
        let t = text(&n).expect("text");
        let h = html(&n).expect("html");
        for part in [&t, &h] {
            assert!(part.contains("Invitation à la séance"));
            assert!(part.contains("PER-2026-0001"));
            assert!(part.contains("aucune information sur les"));
        }
        assert!(t.contains("Cellule <Perpignan>"));
        assert!(
            h.contains("Cellule &#60;Perpignan&#62;") || h.contains("Cellule &lt;Perpignan&gt;")
        );
        assert!(h.contains("a=1&#38;b=2") || h.contains("a=1&amp;b=2"));
    }
}
