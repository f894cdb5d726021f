//! What `cellule demo` prints: the cellule it made, the people with their tokens, and commands
//! ready to paste.

use super::*;

pub(super) fn print_summary(config: &Config, s: &Summary, tokens: &[String], ttl: Duration) {
    let total: usize = s.counts.iter().map(|(_, n)| n).sum();
    println!(
        "Demo cellule `{}` « {NAME} » is ready. Everything in it is synthetic.",
        s.slug
    );
    println!(
        "  {total} cases: {}; {} notes",
        s.counts
            .iter()
            .map(|(st, n)| format!("{n} {}", st.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
        s.notes
    );
    if let Some((a, b)) = &s.duplicate {
        println!("  {b} was flagged as a possible duplicate of {a} (same linkage key)");
    }
    println!(
        "  routing: {} interlocutors, {} rules (policies/examples/routing-perpignan.toml)",
        s.interlocutors, s.rules
    );
    println!(
        "  schedule: second Thursday of the month, 14:00 Europe/Paris; {} sessions planned",
        s.planned
    );
    for (day, items, deferred) in &s.past {
        println!(
            "  past session {day}: attendance, {items} items decided ({deferred} deferred to the next one), minutes approved"
        );
    }
    println!(
        "  next session {} (an extra one, today: run it in the browser as demo-coordinator): agenda published, {} items, {} deferred (capacity)",
        s.next.local_start,
        s.next_items.len(),
        s.next_deferred
    );
    println!();
    println!(
        "People (tokens from the development issuer, valid {}):",
        humantime::format_duration(ttl)
    );
    for p in PEOPLE {
        println!(
            "  {:<20} {:<24} {:<12} {}",
            p.var,
            p.sub,
            p.role.as_str(),
            p.what
        );
    }
    println!(
        "  {:<20} {ADMIN:<24} {:<12} memberships, never case content: only if the server runs \
         with CELLULE_ADMINS={ADMIN}",
        "ADMIN", "admin"
    );
    println!();
    println!(
        "# Paste into a shell, with `CELLULE_ADMINS={ADMIN} cargo run --release` serving in another terminal:"
    );
    println!("export API=http://{}/v1/cellules/{}", config.bind, s.slug);
    println!("export SESSION={}", s.next.id);
    println!("export MINUTES_SESSION={}", s.minutes_session);
    if let Some((id, _)) = s.next_items.first() {
        println!("export CASE={id}");
    }
    for (var, token) in PEOPLE.iter().map(|p| p.var).chain(["ADMIN"]).zip(tokens) {
        println!("export {var}={token}");
    }
    println!();
    for line in [
        "# the next session's agenda (slots, routing proposals with the rule that matched)",
        "curl -s $API/sessions/$SESSION/agenda -H \"Authorization: Bearer $COORDINATOR\"",
        "# a case on it, as a permanent member of the psychiatry sphere (psychiatry notes included)",
        "curl -s $API/cases/$CASE -H \"Authorization: Bearer $MEMBER_CMP\"",
        "curl -s $API/cases/$CASE/notes -H \"Authorization: Bearer $MEMBER_CMP\"",
        "# the guest organisation sees only the items it is invited to",
        "curl -s $API/sessions/$SESSION/agenda -H \"Authorization: Bearer $GUEST_EMPP\"",
        "# the coordinator's lists: cases to screen, cases in follow-up",
        "curl -s \"$API/cases?status=submitted\" -H \"Authorization: Bearer $COORDINATOR\"",
        "curl -s \"$API/cases?status=in_follow_up\" -H \"Authorization: Bearer $COORDINATOR\"",
        "# the last past session: its decisions (one corrected: two versions), attendance, follow-ups",
        "curl -s $API/sessions/$MINUTES_SESSION/decisions -H \"Authorization: Bearer $COORDINATOR\"",
        "curl -s $API/sessions/$MINUTES_SESSION/attendance -H \"Authorization: Bearer $COORDINATOR\"",
        "curl -s $API/follow-ups -H \"Authorization: Bearer $COORDINATOR\"",
        "# its approved minutes (compte rendu): PDF for the coordinator, HTML for the CCAS (no psychiatry text)",
        "curl -s $API/sessions/$MINUTES_SESSION/minutes -H \"Authorization: Bearer $COORDINATOR\" -H 'Accept: application/pdf' -o compte-rendu.pdf",
        "curl -s $API/sessions/$MINUTES_SESSION/minutes -H \"Authorization: Bearer $MEMBER_CCAS\" -H 'Accept: text/html' -o compte-rendu-ccas.html",
        "# today's session (or in the browser, as demo-coordinator: Séances): open the meeting, decide an item, close, approve the minutes",
        "#   curl -s -X POST $API/sessions/$SESSION/open -H \"Authorization: Bearer $COORDINATOR\"",
    ] {
        println!("{line}");
    }
    println!(
        "#   curl -s -X POST $API/sessions/$SESSION/items/$CASE/decision -H \"Authorization: Bearer $COORDINATOR\" \\\n#     -H 'Content-Type: application/json' -d '{{\"outcome\": \"follow_up\", \"follow_up_date\": \"{}\", \"text\": \"Point dans un mois.\"}}'",
        s.follow_up_example
    );
    for line in [
        "#   curl -s -X POST $API/sessions/$SESSION/close -H \"Authorization: Bearer $COORDINATOR\"",
        "#   curl -s -X POST $API/sessions/$SESSION/minutes/approve -H \"Authorization: Bearer $COORDINATOR\"",
    ] {
        println!("{line}");
    }
    for line in [
        "# a referrer's status view, the calendar, the yearly statistics",
        "curl -s $API/referrals -H \"Authorization: Bearer $REFERRER_CCAS\"",
        "curl -s $API/sessions/$SESSION/calendar.ics -H \"Authorization: Bearer $MEMBER_CCAS\"",
        "curl -s \"$API/stats?year=$(date +%Y)\" -H \"Authorization: Bearer $COORDINATOR\"",
        "# the auditor: who did what (every step above is there), and the chain verification",
        "curl -s \"$API/audit?limit=20\" -H \"Authorization: Bearer $AUDITOR\"",
        "curl -s $API/audit/verify -H \"Authorization: Bearer $AUDITOR\"",
        "# the administrator: memberships, never case content",
        "curl -s $API/members -H \"Authorization: Bearer $ADMIN\"",
    ] {
        println!("{line}");
    }
}
