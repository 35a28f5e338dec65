//! CHATHISTORY (IRCv3 draft/chathistory) on top of the protocol's
//! `history` and `get`: what a command asks for, how its references are
//! found, and which `history` answers it.
//!
//! A reference is a message this server gave an id (`msgid=<room>-<seq>`)
//! or a time (`timestamp=YYYY-MM-DDThh:mm:ss.sssZ`). A time is found by a
//! binary search over the room's numbers (a room's messages are numbered
//! in the order they were posted, so their times grow with their numbers,
//! to within the few milliseconds between a post's time and its number,
//! or between two nodes' clocks): the newest message first, then about
//! log2(seq) more reads of one message each. A read asks `history` for the
//! newest message the user may see at or below a number, so messages they
//! may not see (before their join in a private room, another member's
//! shadow-muted posts) are passed over wherever they lie.

/// The subcommands answered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Sub {
    Before,
    After,
    Latest,
    Around,
    Between,
}

/// A reference, as given or as found.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Mark {
    /// A message's seq.
    Seq(u64),
    /// A time, in the form the server writes (`…T12:10:12.466Z`), which
    /// compares as text.
    Time(String),
}

/// How a time reference bounds what is answered: it names the first
/// message at or after it (`Upper`: BEFORE, AROUND, the later end of
/// BETWEEN) or the last at or before it (`Lower`: AFTER, LATEST, the
/// earlier end of BETWEEN). Messages posted in the same millisecond share
/// a time, so the two differ by every message at the time.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Lower,
    Upper,
    /// A time against a message in BETWEEN: which end it is shows once it
    /// is found. It is searched as `Lower`, and again as `Upper` when the
    /// message turns out to be at or before it.
    Either,
}

/// One CHATHISTORY command, its references being found.
#[derive(Clone, Debug)]
pub(super) struct Query {
    pub channel: String,
    pub room: String,
    pub sub: Sub,
    pub limit: u32,
    /// LATEST `*` has none; BETWEEN has two.
    pub marks: Vec<Mark>,
    /// Each mark's role when it is a time, decided from the marks as given
    /// (a found mark no longer shows which end it was).
    roles: Vec<Role>,
}

/// A binary search for the message a time names: the answer lies in
/// `lo..=hi` (`hi` one past the newest when no message is late enough).
#[derive(Clone, Debug)]
pub(super) struct Seek {
    pub query: Query,
    /// Which of the query's marks is being found.
    pub index: usize,
    pub lo: u64,
    pub hi: u64,
}

/// The next step of a CHATHISTORY: read a message, or answer.
#[derive(Debug, PartialEq)]
pub(super) enum Step {
    /// Read the newest message (to bound the search).
    Newest,
    /// Read the newest message at or below `seq`.
    Probe(u64),
    /// Ask `history` for `limit` before `before` and answer those after
    /// `floor`.
    History { before: Option<u64>, limit: u32, floor: Option<u64> },
    /// Answer the oldest `limit` after `after` (and before `until`), read
    /// forward a page at a time ([`Forward`]).
    Forward { after: u64, until: Option<u64>, limit: u32 },
    /// Nothing can be in range: an empty batch.
    Empty,
}

/// Reads a reference: `msgid=<room>-<seq>` of `room`, or a timestamp.
pub(super) fn mark(text: &str, room: &str) -> Option<Mark> {
    if let Some(id) = text.strip_prefix("msgid=") {
        let (of, seq) = id.rsplit_once('-')?;
        if !of.eq_ignore_ascii_case(room) {
            return None;
        }
        return Some(Mark::Seq(seq.parse().ok()?));
    }
    let time = text.strip_prefix("timestamp=")?;
    // YYYY-MM-DDThh:mm:ss(.sss)?Z, written as the server writes times.
    let shape = |s: &str, form: &str| {
        s.len() == form.len()
            && s.bytes()
                .zip(form.bytes())
                .all(|(c, f)| if f == b'9' { c.is_ascii_digit() } else { c == f })
    };
    if shape(time, "9999-99-99T99:99:99.999Z") {
        Some(Mark::Time(time.to_owned()))
    } else if shape(time, "9999-99-99T99:99:99Z") {
        Some(Mark::Time(format!("{}.000Z", &time[..19])))
    } else {
        None
    }
}

impl Query {
    pub(super) fn new(
        channel: String,
        room: String,
        sub: Sub,
        limit: u32,
        marks: Vec<Mark>,
    ) -> Query {
        let role = |index: usize| match sub {
            Sub::Before | Sub::Around => Role::Upper,
            Sub::After | Sub::Latest => Role::Lower,
            Sub::Between => match (&marks[index], marks.get(1 - index)) {
                // Two equal times bound nothing: both are taken as lower
                // bounds, naming the same message.
                (Mark::Time(a), Some(Mark::Time(b))) => {
                    if a <= b {
                        Role::Lower
                    } else {
                        Role::Upper
                    }
                }
                _ => Role::Either,
            },
        };
        let roles = (0..marks.len()).map(role).collect();
        Query { channel, room, sub, limit, marks, roles }
    }

    /// What to do next: find the first time reference left, or answer.
    pub(super) fn next(self) -> (Step, Option<Seek>) {
        if let Some(index) = self.marks.iter().position(|m| matches!(m, Mark::Time(_))) {
            return (Step::Newest, Some(Seek { query: self, index, lo: 1, hi: 0 }));
        }
        (self.answer(), None)
    }

    /// The `history` that answers the query, its marks all messages.
    fn answer(&self) -> Step {
        let seq = |i: usize| match self.marks.get(i) {
            Some(Mark::Seq(s)) => Some(*s),
            _ => None,
        };
        let limit = self.limit;
        let (before, floor) = match (self.sub, seq(0), seq(1)) {
            (Sub::Before, Some(s), _) => (Some(s), None),
            (Sub::After, Some(s), _) => {
                return Step::Forward { after: s, until: None, limit };
            }
            (Sub::Latest, s, _) => (None, s),
            (Sub::Around, Some(s), _) => (Some(s.saturating_add(u64::from(limit / 2) + 1)), None),
            (Sub::Between, Some(a), Some(b)) => {
                let (lo, hi) = (a.min(b), a.max(b));
                if a <= b {
                    if hi <= lo.saturating_add(1) {
                        return Step::Empty;
                    }
                    return Step::Forward { after: lo, until: Some(hi), limit };
                } else {
                    (Some(hi), Some(lo))
                }
            }
            _ => return Step::Empty,
        };
        match (before, floor) {
            (Some(0 | 1), _) => Step::Empty,
            (Some(b), Some(f)) if b <= f.saturating_add(1) => Step::Empty,
            _ => Step::History { before, limit, floor },
        }
    }
}

/// Messages to read a page.
const PAGE: u64 = 200;
/// Pages one forward read reads at most: beyond, what it has is answered
/// (only a long run of messages the user may not see gets that far).
const PAGES_MOST: u32 = 8;

/// The oldest `want` messages the user may see after `after` and before
/// `until`, read forward. `history` answers the newest of a range, so each
/// page asks for a range no longer than a page, and every message of it
/// the user may see comes back; pages go on until enough are read, or the
/// room's newest message is passed.
#[derive(Clone, Debug)]
pub(super) struct Forward {
    pub channel: String,
    pub room: String,
    after: u64,
    until: u64,
    want: usize,
    newest: u64,
    pages: u32,
    pub got: Vec<serde_json::Value>,
}

impl Forward {
    pub(super) fn new(query: &Query, after: u64, until: Option<u64>, limit: u32) -> Forward {
        Forward {
            channel: query.channel.clone(),
            room: query.room.clone(),
            after,
            until: until.unwrap_or(u64::MAX),
            want: limit as usize,
            newest: 0,
            pages: 0,
            got: Vec::new(),
        }
    }

    /// The room's newest message is `newest` (none: the room has none):
    /// the first page to read (`before`, `limit`), or none.
    pub(super) fn newest(&mut self, newest: Option<u64>) -> Option<(u64, u32)> {
        self.newest = newest.unwrap_or(0);
        self.next()
    }

    /// A page read: its messages, oldest first. The next page, or none.
    pub(super) fn page(
        &mut self,
        before: u64,
        messages: Vec<serde_json::Value>,
    ) -> Option<(u64, u32)> {
        let (after, until) = (self.after, self.until);
        let fresh = messages
            .into_iter()
            .filter(|m| m["seq"].as_u64().is_some_and(|s| s > after && s < until && s < before));
        let room = self.want - self.got.len().min(self.want);
        self.got.extend(fresh.take(room));
        self.after = before - 1;
        self.pages += 1;
        self.next()
    }

    fn next(&self) -> Option<(u64, u32)> {
        if self.got.len() >= self.want || self.pages >= PAGES_MOST {
            return None;
        }
        let end = self.until.min(self.newest.saturating_add(1));
        let before = end.min(self.after.saturating_add(PAGE + 1));
        if before <= self.after.saturating_add(1) {
            return None;
        }
        Some((before, u32::try_from(before - self.after - 1).unwrap_or(u32::MAX)))
    }
}

impl Seek {
    fn time(&self) -> &str {
        match &self.query.marks[self.index] {
            Mark::Time(t) => t,
            Mark::Seq(_) => "",
        }
    }

    /// Whether a message posted at `ts` lies at or past the mark (for a
    /// lower bound, strictly past it).
    fn past(&self, ts: &str) -> bool {
        match self.query.roles[self.index] {
            Role::Lower | Role::Either => ts > self.time(),
            Role::Upper => ts >= self.time(),
        }
    }

    /// The newest message is `newest` (seq and time), or there is none.
    pub(super) fn newest(mut self, newest: Option<(u64, &str)>) -> (Step, Option<Seek>) {
        match newest {
            Some((seq, ts)) if self.past(ts) => {
                self.hi = seq;
                self.probe()
            }
            Some((seq, _)) => self.found(seq + 1),
            None => self.found(1),
        }
    }

    /// The newest message the user may see at or below `probe` is
    /// `found` (its seq and time), or there is none.
    pub(super) fn read(mut self, probe: u64, found: Option<(u64, &str)>) -> (Step, Option<Seek>) {
        match found {
            // It is past the mark: the first past it is no later.
            Some((seq, ts)) if seq <= probe && self.past(ts) => self.hi = seq.max(self.lo),
            // None up to `probe` is (those not seen lie among them).
            _ => self.lo = probe + 1,
        }
        self.probe()
    }

    fn probe(self) -> (Step, Option<Seek>) {
        if self.lo >= self.hi {
            let at = self.hi;
            return self.found(at);
        }
        let mid = self.lo + (self.hi - self.lo) / 2;
        (Step::Probe(mid), Some(self))
    }

    /// The mark names the first message past it, `first`: as a message,
    /// the one a lower bound is after, or the one an upper bound is before.
    fn found(mut self, first: u64) -> (Step, Option<Seek>) {
        let other = match (self.query.sub, self.query.marks.get(1 - self.index)) {
            (Sub::Between, Some(Mark::Seq(other))) => Some(*other),
            _ => None,
        };
        let at = match self.query.roles[self.index] {
            Role::Lower => first - 1,
            // The later end of BETWEEN is never taken as before the earlier
            // (a message at the very time): nothing lies between them.
            Role::Upper => other.map_or(first, |other| first.max(other)),
            Role::Either => match other {
                // The message is at or before the time: the time is the
                // later end, and names the first message at or after it,
                // which is no later than `first`; one at or before the
                // message leaves nothing between them, as the message's
                // next does.
                Some(message) if message < first => {
                    self.query.roles[self.index] = Role::Upper;
                    (self.lo, self.hi) = (message + 1, first);
                    return self.probe();
                }
                _ => first - 1,
            },
        };
        self.query.marks[self.index] = Mark::Seq(at);
        self.query.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sub: Sub, marks: Vec<Mark>, limit: u32) -> Query {
        Query::new("#R".into(), "R".into(), sub, limit, marks)
    }

    #[test]
    fn references_are_read_as_this_server_writes_them() {
        assert_eq!(mark("msgid=ROOM-12", "ROOM"), Some(Mark::Seq(12)));
        assert_eq!(mark("msgid=room-12", "ROOM"), Some(Mark::Seq(12)));
        assert_eq!(mark("msgid=OTHER-12", "ROOM"), None, "another room's message");
        assert_eq!(mark("msgid=ROOM-x", "ROOM"), None);
        let t = "timestamp=2026-12-05T12:10:12.466Z";
        assert_eq!(mark(t, "R"), Some(Mark::Time("2026-12-05T12:10:12.466Z".into())));
        let t = "timestamp=2026-12-05T12:10:12Z";
        assert_eq!(mark(t, "R"), Some(Mark::Time("2026-12-05T12:10:12.000Z".into())));
        for bad in ["timestamp=yesterday", "timestamp=2026-12-05 12:10:12Z", "*", "12"] {
            assert_eq!(mark(bad, "R"), None, "{bad}");
        }
    }

    #[test]
    fn messages_name_their_history_at_once() {
        let ask = |sub, marks, limit| query(sub, marks, limit).next().0;
        let history = |before, limit, floor| Step::History { before, limit, floor };
        assert_eq!(ask(Sub::Before, vec![Mark::Seq(50)], 10), history(Some(50), 10, None));
        let forward = |after, until, limit| Step::Forward { after, until, limit };
        assert_eq!(ask(Sub::After, vec![Mark::Seq(50)], 10), forward(50, None, 10));
        assert_eq!(ask(Sub::Latest, vec![], 10), history(None, 10, None));
        assert_eq!(ask(Sub::Latest, vec![Mark::Seq(7)], 10), history(None, 10, Some(7)));
        assert_eq!(ask(Sub::Around, vec![Mark::Seq(50)], 10), history(Some(56), 10, None));
        let between = |a, b| ask(Sub::Between, vec![Mark::Seq(a), Mark::Seq(b)], 10);
        assert_eq!(between(10, 100), forward(10, Some(100), 10), "the first 10 after 10");
        assert_eq!(between(100, 10), history(Some(100), 10, Some(10)), "the last 10 before 100");
        assert_eq!(between(10, 15), forward(10, Some(15), 10));
        assert_eq!(between(10, 11), Step::Empty);
        assert_eq!(ask(Sub::Before, vec![Mark::Seq(1)], 10), Step::Empty);
    }

    /// Runs a search over messages posted at `times` (seq 1 first), those
    /// in `hidden` unreadable; the step it ends in.
    fn search(q: Query, times: &[&str], hidden: &[u64]) -> (Step, usize) {
        let (mut step, mut seek) = q.next();
        let mut reads = 0;
        while let Some(s) = seek.take() {
            (step, seek) = match step {
                Step::Newest => s.newest(times.last().map(|t| (times.len() as u64, *t))),
                Step::Probe(probe) => {
                    reads += 1;
                    // The newest readable at or below `probe`.
                    let found = (1..=probe.min(times.len() as u64))
                        .rev()
                        .find(|seq| !hidden.contains(seq))
                        .map(|seq| (seq, times[seq as usize - 1]));
                    s.read(probe, found)
                }
                other => panic!("{other:?} with a search under way"),
            };
        }
        (step, reads)
    }

    /// What `step` answers in a room of `newest` messages of which those of
    /// `readable` may be read: the seqs, as `history` (the newest `limit`
    /// below `before`) and the forward reads would give them.
    fn answer(step: Step, readable: &[u64], newest: u64) -> Vec<u64> {
        let history = |before: Option<u64>, limit: u32| -> Vec<u64> {
            let below: Vec<u64> =
                readable.iter().copied().filter(|&s| before.is_none_or(|b| s < b)).collect();
            below[below.len().saturating_sub(limit as usize)..].to_vec()
        };
        match step {
            Step::History { before, limit, floor } => history(before, limit)
                .into_iter()
                .filter(|&s| floor.is_none_or(|f| s > f))
                .collect(),
            Step::Forward { after, until, limit } => {
                let q = query(Sub::After, vec![], limit);
                let mut forward = Forward::new(&q, after, until, limit);
                let mut page = forward.newest(readable.last().map(|_| newest));
                while let Some((before, limit)) = page {
                    let read = history(Some(before), limit);
                    let read = read.into_iter().map(|s| serde_json::json!({"seq": s})).collect();
                    page = forward.page(before, read);
                }
                forward.got.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
            }
            _ => Vec::new(),
        }
    }

    #[test]
    fn forward_reads_pass_over_what_may_not_be_read() {
        let all: Vec<u64> = (1..=1000).collect();
        let after = |s, limit| Step::Forward { after: s, until: None, limit };
        assert_eq!(answer(after(100, 10), &all, 1000), (101..=110).collect::<Vec<_>>());
        // Near the end: what there is.
        assert_eq!(answer(after(995, 10), &all, 1000), (996..=1000).collect::<Vec<_>>());
        assert_eq!(answer(after(1000, 10), &all, 1000), Vec::<u64>::new());
        // A run of messages that may not be read, longer than a page.
        let readable: Vec<u64> = all.iter().copied().filter(|s| !(101..=450).contains(s)).collect();
        assert_eq!(answer(after(100, 10), &readable, 1000), (451..=460).collect::<Vec<_>>());
        // BETWEEN stops at its end.
        let between = Step::Forward { after: 100, until: Some(455), limit: 10 };
        assert_eq!(answer(between, &readable, 1000), (451..=454).collect::<Vec<_>>());
        // Past eight pages of them, what was found is answered.
        let readable: Vec<u64> = (1..=3000).filter(|s| !(2..=1999).contains(s)).collect();
        assert_eq!(answer(after(1, 3), &readable, 3000), Vec::<u64>::new());
        let readable: Vec<u64> = (1..=3000).filter(|s| !(2..=1598).contains(s)).collect();
        assert_eq!(answer(after(1, 3), &readable, 3000), [1599, 1600, 1601]);
    }

    /// Messages posted in the same millisecond share a time: a time names
    /// none of them as a bound, whichever end of BETWEEN it is, given
    /// either way round, against a time or a message.
    #[test]
    fn messages_sharing_a_time_are_all_inside_or_all_outside() {
        // Three messages a millisecond, 60 of them.
        let times: Vec<String> =
            (0..60).map(|i| format!("2026-12-05T12:00:00.{:03}Z", i / 3)).collect();
        let times: Vec<&str> = times.iter().map(String::as_str).collect();
        let all: Vec<u64> = (1..=60).collect();
        let at = |s: u64| times[s as usize - 1];
        // Where a reference falls against message `m`: -1 before it, 0 at
        // it, 1 after it.
        let side = |mark: &Mark, m: u64| match mark {
            Mark::Seq(s) => s.cmp(&m) as i32,
            Mark::Time(t) => t.as_str().cmp(at(m)) as i32,
        };
        let mut marks: Vec<Mark> = [0, 7, 8, 12]
            .iter()
            .map(|ms| Mark::Time(format!("2026-12-05T12:00:00.{ms:03}Z")))
            .collect();
        marks.extend([3, 22, 26].map(Mark::Seq));
        for a in &marks {
            for b in &marks {
                if matches!((a, b), (Mark::Seq(_), Mark::Seq(_))) {
                    continue;
                }
                let (step, reads) =
                    search(query(Sub::Between, vec![a.clone(), b.clone()], 100), &times, &[]);
                assert!(reads <= 14, "{reads} reads");
                let expected: Vec<u64> =
                    all.iter().copied().filter(|&m| side(a, m) * side(b, m) == -1).collect();
                assert_eq!(answer(step, &all, 60), expected, "BETWEEN {a:?} {b:?}");
            }
        }
        // BEFORE, AFTER and LATEST a shared time: none of those at it.
        for ms in [0, 7, 19] {
            let mark = format!("2026-12-05T12:00:00.{ms:03}Z");
            let time = Mark::Time(mark.clone());
            let (before, _) = search(query(Sub::Before, vec![time.clone()], 100), &times, &[]);
            let earlier: Vec<u64> =
                all.iter().copied().filter(|&m| at(m) < mark.as_str()).collect();
            assert_eq!(answer(before, &all, 60), earlier, "BEFORE {mark}");
            let later: Vec<u64> = all.iter().copied().filter(|&m| at(m) > mark.as_str()).collect();
            let (after, _) = search(query(Sub::After, vec![time.clone()], 100), &times, &[]);
            assert_eq!(answer(after, &all, 60), later, "AFTER {mark}");
            let (latest, _) = search(query(Sub::Latest, vec![time], 100), &times, &[]);
            assert_eq!(answer(latest, &all, 60), later, "LATEST {mark}");
        }
    }

    #[test]
    fn a_time_is_found_by_a_binary_search() {
        let times: Vec<String> =
            (0..1000).map(|i| format!("2026-12-05T12:{:02}:{:02}.000Z", i / 60, i % 60)).collect();
        let times: Vec<&str> = times.iter().map(String::as_str).collect();
        let time = |s: &str| Mark::Time(s.into());
        let history = |before, limit, floor| Step::History { before, limit, floor };
        // Message 101 was posted at 12:01:40: before it, the 10 up to 100.
        let (step, reads) =
            search(query(Sub::Before, vec![time("2026-12-05T12:01:40.000Z")], 10), &times, &[]);
        assert_eq!(step, history(Some(101), 10, None));
        assert!(reads <= 10, "{reads} reads");
        // After it: from 102 on (a time between two messages: from 102 too).
        let (step, _) =
            search(query(Sub::After, vec![time("2026-12-05T12:01:40.000Z")], 10), &times, &[]);
        assert_eq!(step, Step::Forward { after: 101, until: None, limit: 10 });
        let (step, _) =
            search(query(Sub::After, vec![time("2026-12-05T12:01:40.500Z")], 10), &times, &[]);
        assert_eq!(step, Step::Forward { after: 101, until: None, limit: 10 });
        // Later than every message: nothing after, all before.
        let (step, _) =
            search(query(Sub::Latest, vec![time("2027-01-01T00:00:00.000Z")], 10), &times, &[]);
        assert_eq!(step, history(None, 10, Some(1000)));
        let (step, _) =
            search(query(Sub::Before, vec![time("2020-01-01T00:00:00.000Z")], 10), &times, &[]);
        assert_eq!(step, Step::Empty);
        // BETWEEN two times, given either way round.
        let (a, b) = (time("2026-12-05T12:00:10.000Z"), time("2026-12-05T12:00:20.000Z"));
        let (step, _) = search(query(Sub::Between, vec![a.clone(), b.clone()], 100), &times, &[]);
        assert_eq!(step, Step::Forward { after: 11, until: Some(21), limit: 100 }, "11 < seq < 21");
        // The later first: the last of them before it (here the same).
        let (step, _) = search(query(Sub::Between, vec![b, a], 100), &times, &[]);
        assert_eq!(step, history(Some(21), 100, Some(11)));
        // Messages before a private room's join are not readable: taken as
        // earlier, which they are.
        let hidden: Vec<u64> = (1..=500).collect();
        let (step, _) =
            search(query(Sub::Around, vec![time("2026-12-05T12:10:00.000Z")], 10), &times, &hidden);
        assert_eq!(step, history(Some(607), 10, None));
        // Messages not readable in the middle (another member's
        // shadow-muted posts) are passed over, wherever the probes fall:
        // what is answered is what is readable on either side of the time.
        let mark = "2026-12-05T12:01:40.000Z";
        for hidden in [vec![500], (102..=600).collect::<Vec<u64>>(), vec![101, 102], vec![99, 100]]
        {
            let readable: Vec<u64> = (1..=1000).filter(|s| !hidden.contains(s)).collect();
            let answered = |step: Step| answer(step, &readable, 1000);
            let at = |s: &u64| times[*s as usize - 1];
            let after = query(Sub::After, vec![time(mark)], 10);
            let expected: Vec<u64> =
                readable.iter().copied().filter(|s| at(s) > mark).take(10).collect();
            assert_eq!(answered(search(after, &times, &hidden).0), expected, "after, {hidden:?}");
            let before = query(Sub::Before, vec![time(mark)], 10);
            let mut expected: Vec<u64> =
                readable.iter().copied().filter(|s| at(s) < mark).collect();
            let expected = expected.split_off(expected.len() - 10);
            assert_eq!(answered(search(before, &times, &hidden).0), expected, "before, {hidden:?}");
        }
        // Numbers near the end of the range do not overflow.
        let past_the_end = query(Sub::After, vec![Mark::Seq(u64::MAX)], 10);
        let Step::Forward { after, until, limit } = past_the_end.clone().next().0 else { panic!() };
        let mut forward = Forward::new(&past_the_end, after, until, limit);
        assert_eq!(forward.newest(Some(u64::MAX)), None);
        assert_eq!(
            query(Sub::Around, vec![Mark::Seq(u64::MAX - 1)], 10).next().0,
            history(Some(u64::MAX), 10, None)
        );
        // An empty room.
        let (step, _) =
            search(query(Sub::Before, vec![time("2026-12-05T12:10:00.000Z")], 10), &[], &[]);
        assert_eq!(step, Step::Empty);
    }
}
