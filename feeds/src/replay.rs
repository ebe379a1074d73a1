//! Replayed sources: recorded exchange captures ([`CaptureReplay`], Binance format, see
//! [`crate::binance`]) and recorded tick files ([`TickReplay`], see [`crate::tickfile`]).
//!
//! Both are paced by the recording's own clock through a [`Pacer`]: at speed 1 a tick is due
//! when as much wall time has passed since the first one as passed in the recording; at
//! speed 10 ten times sooner; at [`Speed::Max`] at once. With `looped`, the recording starts
//! again at its end: recording times are shifted by its span (plus one millisecond) so time
//! keeps rising, and per-symbol `seq` keeps rising too.
//!
//! Several capture files are merged by capture time (ties go to the file named first), read
//! line by line with bounded memory; `.gz` files are decompressed on the fly. The universe is
//! the set of symbols the files trade or quote, found by a first pass over them at open (in
//! name order, so ids do not depend on which file a symbol appears in first).
//!
//! A capture replay also rebuilds each symbol's Level-2 order book from the file's depth
//! snapshot and `depthUpdate` diffs ([`crate::book`]: Binance's procedure and continuity
//! rules, spot or futures by whether the diffs carry `pu`). Every change of a book (a diff
//! applied, a rebuild from a snapshot, a continuity break that makes it stale) is a
//! [`FeedPoll::Book`]; [`FeedSource::book_levels`] reads it. A break is counted and logged.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::binance::{self, Event, L1Book, SkipKind};
use crate::book::{self, BookBuilder, Continuity, DepthEvent, Outcome};
use crate::tickfile::{BookRecord, Record, TickFileError, TickReader};
use crate::{BookHealth, FeedPoll, FeedSource, SymbolInfo, Universe};

/// How fast a recording is replayed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as the gateway can take it.
    Max,
    /// This many times real time (`1.0` = the recording's own spacing).
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 && f <= 1_000_000.0 => Ok(Speed::Factor(f)),
            _ => Err(format!("expected `max` or a factor in (0, 1000000], got {s:?}")),
        }
    }
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Max => f.write_str("max"),
            Speed::Factor(x) => write!(f, "{x}x"),
        }
    }
}

/// Maps recording time to wall time.
#[derive(Clone, Debug)]
pub struct Pacer {
    speed: Speed,
    /// (wall ns, recording ns) of the first tick.
    origin: Option<(u64, u64)>,
}

impl Pacer {
    /// A pacer that anchors on the first tick it is asked about.
    pub fn new(speed: Speed) -> Self {
        Pacer { speed, origin: None }
    }

    /// Wall time (ns) at which the event recorded at `rec_ns` is due, given the time now.
    pub fn due(&mut self, rec_ns: u64, now_ns: u64) -> u64 {
        let Speed::Factor(f) = self.speed else { return now_ns };
        let (wall0, rec0) = *self.origin.get_or_insert((now_ns, rec_ns));
        let offset = rec_ns.saturating_sub(rec0) as f64 / f;
        wall0.saturating_add(offset as u64)
    }
}

/// Replay options shared by the replayed sources.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplayOptions {
    /// Pace.
    pub speed: Speed,
    /// Start again at the end.
    pub looped: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions { speed: Speed::Factor(1.0), looped: false }
    }
}

/// Gap inserted between the end of a recording and its next loop.
pub const LOOP_GAP_NS: u64 = 1_000_000;

/// One recording as the replay loop sees it: what comes next and when, one pass at a time.
trait Recording {
    /// The recording time (loop offsets applied) of the next event of this pass, or `None`
    /// at the end of the pass. Called until [`Recording::take`] consumes that event.
    fn next_ns(&mut self) -> Option<u64>;
    /// Consumes the event `next_ns` announced: its tick or book change, or `None` if it
    /// yields none (a quote that does not change the L1 state, a diff that was buffered).
    fn take(&mut self) -> Option<FeedPoll>;
    /// Starts the next pass, with time and seq continuing to rise.
    ///
    /// # Errors
    /// Why the recording cannot be read again.
    fn restart(&mut self) -> Result<(), String>;
    /// Logs the end of pass `pass` (1-based).
    fn log_pass(&self, pass: u64);
}

/// The loop both replays share: pace each event to its recording time, end or start over at
/// the end of a pass. A pass that yielded no tick is never looped (it would spin).
#[derive(Clone, Debug)]
struct Replayer {
    pacer: Pacer,
    looped: bool,
    loops: u64,
    ticks_this_pass: u64,
    ended: bool,
}

impl Replayer {
    fn new(opts: ReplayOptions) -> Self {
        Replayer {
            pacer: Pacer::new(opts.speed),
            looped: opts.looped,
            loops: 0,
            ticks_this_pass: 0,
            ended: false,
        }
    }

    fn poll(&mut self, rec: &mut impl Recording, now_ns: u64) -> FeedPoll {
        // Bounded: each turn consumes an event, or ends a pass (and a pass that yields no
        // tick is not started over).
        loop {
            if self.ended {
                return FeedPoll::End;
            }
            let Some(rec_ns) = rec.next_ns() else {
                rec.log_pass(self.loops + 1);
                if !self.looped || self.ticks_this_pass == 0 {
                    self.ended = true;
                    continue;
                }
                match rec.restart() {
                    Ok(()) => {
                        self.loops += 1;
                        self.ticks_this_pass = 0;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "replay cannot loop; the feed ends");
                        self.ended = true;
                    }
                }
                continue;
            };
            let due = self.pacer.due(rec_ns, now_ns);
            if due > now_ns {
                return FeedPoll::Pending { until_ns: Some(due) };
            }
            if let Some(p) = rec.take() {
                self.ticks_this_pass += 1;
                return p;
            }
        }
    }
}

/// Line counts of a capture replay (one pass; loops add up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Lines read.
    pub lines: u64,
    /// Trades normalized into ticks.
    pub trades: u64,
    /// Book-ticker quotes normalized into ticks.
    pub quotes: u64,
    /// Order-book diffs read.
    pub depth: u64,
    /// REST depth snapshots read.
    pub snapshots: u64,
    /// Order-book continuity breaks (each makes the symbol's book stale until the next
    /// snapshot rebuilds it).
    pub book_breaks: u64,
    /// Diffs after which a book was crossed (the book is then not published until it is not).
    pub book_crossed: u64,
    /// Other well-formed messages skipped.
    pub other: u64,
    /// Malformed lines skipped.
    pub malformed: u64,
}

impl std::fmt::Display for ReplayCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lines: {} trades, {} quotes, {} depth diffs, {} depth snapshots ({} book breaks, {} crossed); \
             skipped {} other, {} malformed",
            self.lines,
            self.trades,
            self.quotes,
            self.depth,
            self.snapshots,
            self.book_breaks,
            self.book_crossed,
            self.other,
            self.malformed
        )
    }
}

/// Malformed lines logged per file before the rest are only counted.
pub const MALFORMED_LOGGED_PER_FILE: u64 = 10;

/// A normalized event with its symbol resolved, held as one file's next event.
#[derive(Clone, Debug)]
struct Head {
    capture_ns: u64,
    id: u32,
    event: HeadEvent,
}

/// What a capture line holds for the replay.
#[derive(Clone, Debug)]
enum HeadEvent {
    /// A trade or a book-ticker quote.
    L1(binance::Event<'static>),
    /// A depth diff or snapshot of the symbol's order book.
    Depth(DepthEvent),
}

/// Opens a capture file, decompressing `.gz`.
fn open_capture(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let file = File::open(path)?;
    let gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if gz {
        Box::new(BufReader::with_capacity(1 << 16, flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, file))
    })
}

/// One capture file being read.
struct CaptureFile {
    path: PathBuf,
    /// The symbol the file name says it holds (REST snapshot lines name none).
    symbol: Option<String>,
    input: Box<dyn BufRead + Send>,
    line_no: u64,
    buf: Vec<u8>,
    head: Option<Head>,
    malformed: u64,
}

impl CaptureFile {
    fn open(path: &Path) -> io::Result<Self> {
        Ok(CaptureFile {
            path: path.to_owned(),
            symbol: book::capture_symbol(path),
            input: open_capture(path)?,
            line_no: 0,
            buf: Vec::with_capacity(4096),
            head: None,
            malformed: 0,
        })
    }

    /// Reads lines until the next trade or quote (kept as `head`) or the end of the file,
    /// counting everything skipped. `log` says whether malformed lines are logged.
    fn advance(&mut self, universe: &Universe, counts: &mut ReplayCounts, log: bool) {
        self.head = None;
        loop {
            self.buf.clear();
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), line = self.line_no + 1, error = %e,
                        "capture file unreadable from here on; skipping its rest");
                    counts.malformed += 1;
                    return;
                }
            }
            self.line_no += 1;
            counts.lines += 1;
            let mut line = &self.buf[..];
            while let [rest @ .., b'\n' | b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                counts.lines -= 1;
                continue;
            }
            let parsed = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string()).and_then(|l| {
                match binance::parse_line(l).map_err(|e| e.to_string())? {
                    Event::Skip(SkipKind::Depth | SkipKind::Snapshot) => self.depth_head(l, universe),
                    Event::Skip(k) => Ok(Err(k)),
                    e @ (Event::Trade { .. } | Event::Quote { .. }) => {
                        let (Event::Trade { symbol, .. } | Event::Quote { symbol, .. }) = &e else {
                            return Ok(Err(SkipKind::Other));
                        };
                        universe
                            .id(symbol)
                            .map(|id| Ok(resolve(id, &e)))
                            .ok_or_else(|| format!("symbol {symbol:?} is not a valid symbol name"))
                    }
                }
            });
            match parsed {
                Ok(Ok(head)) => {
                    match &head.event {
                        HeadEvent::L1(Event::Trade { .. }) => counts.trades += 1,
                        HeadEvent::L1(_) => counts.quotes += 1,
                        HeadEvent::Depth(DepthEvent::Diff(_)) => counts.depth += 1,
                        HeadEvent::Depth(DepthEvent::Snapshot(_)) => counts.snapshots += 1,
                    }
                    self.head = Some(head);
                    return;
                }
                Ok(Err(SkipKind::Depth)) => counts.depth += 1,
                Ok(Err(SkipKind::Snapshot)) => counts.snapshots += 1,
                Ok(Err(SkipKind::Other)) => counts.other += 1,
                Err(reason) => {
                    counts.malformed += 1;
                    self.malformed += 1;
                    if log && self.malformed <= MALFORMED_LOGGED_PER_FILE {
                        tracing::warn!(file = %self.path.display(), line = self.line_no, %reason,
                            "malformed capture line skipped");
                        if self.malformed == MALFORMED_LOGGED_PER_FILE {
                            tracing::warn!(file = %self.path.display(),
                                "further malformed lines of this file are counted, not logged");
                        }
                    }
                }
            }
        }
    }
}

impl CaptureFile {
    /// A depth line as the file's next event; skipped (`Ok(Err(kind))`, counted but not
    /// replayed) when it is for a symbol outside the universe (depth only, or a snapshot in a
    /// file whose name says no symbol), or a partial-depth view.
    fn depth_head(&self, line: &str, universe: &Universe) -> Result<Result<Head, SkipKind>, String> {
        let Some((symbol, event)) = book::parse_depth_line(line).map_err(|e| e.to_string())? else {
            return Ok(Err(SkipKind::Other));
        };
        let skip = match event {
            DepthEvent::Diff(_) => SkipKind::Depth,
            DepthEvent::Snapshot(_) => SkipKind::Snapshot,
        };
        let symbol = if symbol.is_empty() { self.symbol.as_deref().unwrap_or("") } else { &symbol };
        let Some(id) = universe.id(symbol) else { return Ok(Err(skip)) };
        let capture_ns = line.split_once(' ').and_then(|(ts, _)| ts.parse().ok()).unwrap_or(0);
        Ok(Ok(Head { capture_ns, id, event: HeadEvent::Depth(event) }))
    }
}

/// Drops the borrowed symbol name once it is resolved to an id.
fn resolve(id: u32, e: &Event<'_>) -> Head {
    let event = match *e {
        Event::Trade { capture_ns, price, qty, trade_id, side, .. } => {
            Event::Trade { capture_ns, symbol: "".into(), price, qty, trade_id, side }
        }
        Event::Quote { capture_ns, bid, bid_size, ask, ask_size, .. } => {
            Event::Quote { capture_ns, symbol: "".into(), bid, bid_size, ask, ask_size }
        }
        Event::Skip(k) => Event::Skip(k),
    };
    Head { capture_ns: binance::capture_ns(e).unwrap_or(0), id, event: HeadEvent::L1(event) }
}

/// What a first pass over capture files found.
#[derive(Clone, Debug, Default)]
pub struct CaptureScan {
    /// Symbols traded or quoted, in name order, with their first price.
    pub symbols: Vec<SymbolInfo>,
    /// Line counts.
    pub counts: ReplayCounts,
    /// Capture times of the first and last trade or quote (over all files).
    pub span: Option<(u64, u64)>,
}

/// Scans capture files once: their symbols, counts and time span.
///
/// # Errors
/// If a file cannot be opened.
pub fn scan_captures(paths: &[PathBuf]) -> io::Result<CaptureScan> {
    let mut first_price = std::collections::BTreeMap::<String, i64>::new();
    let mut scan = CaptureScan::default();
    let mut buf = Vec::with_capacity(4096);
    for path in paths {
        let mut input =
            open_capture(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        loop {
            buf.clear();
            match input.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => {
                    scan.counts.malformed += 1;
                    break;
                }
            }
            let line = std::str::from_utf8(&buf).map(|l| l.trim_end_matches(['\n', '\r']));
            let Ok(line) = line else {
                scan.counts.lines += 1;
                scan.counts.malformed += 1;
                continue;
            };
            if line.is_empty() {
                continue;
            }
            scan.counts.lines += 1;
            match binance::parse_line(line) {
                Ok(Event::Trade { capture_ns, symbol, price, .. })
                    if crate::universe::valid_name(&symbol) =>
                {
                    scan.counts.trades += 1;
                    first_price.entry(symbol.into_owned()).or_insert(price);
                    widen(&mut scan.span, capture_ns);
                }
                Ok(Event::Quote { capture_ns, symbol, bid, ask, .. })
                    if crate::universe::valid_name(&symbol) =>
                {
                    scan.counts.quotes += 1;
                    first_price.entry(symbol.into_owned()).or_insert(if bid > 0 { bid } else { ask });
                    widen(&mut scan.span, capture_ns);
                }
                Ok(Event::Skip(SkipKind::Depth)) => scan.counts.depth += 1,
                Ok(Event::Skip(SkipKind::Snapshot)) => scan.counts.snapshots += 1,
                Ok(Event::Skip(SkipKind::Other)) => scan.counts.other += 1,
                Ok(_) | Err(_) => scan.counts.malformed += 1,
            }
        }
    }
    scan.symbols = first_price
        .into_iter()
        .map(|(name, p)| SymbolInfo { name, ref_price: p.max(1), tick_size: 1 })
        .collect();
    Ok(scan)
}

fn widen(span: &mut Option<(u64, u64)>, t: u64) {
    *span = Some(match *span {
        None => (t, t),
        Some((a, b)) => (a.min(t), b.max(t)),
    });
}

/// Replays Binance capture files as L1 ticks (`--feed replay:PATH[,PATH...]`).
pub struct CaptureReplay {
    files: CaptureFiles,
    replayer: Replayer,
    speed: Speed,
}

/// The capture files of a [`CaptureReplay`], merged by capture time: its [`Recording`].
struct CaptureFiles {
    paths: Vec<PathBuf>,
    universe: Universe,
    files: Vec<CaptureFile>,
    book: L1Book,
    /// Each symbol's Level-2 book, once the files have a depth event for it.
    depth: Vec<Option<DepthBook>>,
    counts: ReplayCounts,
    span_ns: u64,
    loop_offset_ns: u64,
    passes: u64,
    /// The file holding the event `next_ns` announced, with its recording time.
    next: Option<(usize, u64)>,
}

impl CaptureReplay {
    /// Scans `paths` for their universe, then opens them for replay.
    ///
    /// # Errors
    /// If a file cannot be opened, or the files hold no trade or quote at all.
    pub fn open(paths: Vec<PathBuf>, opts: ReplayOptions) -> io::Result<Self> {
        if paths.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no capture files given"));
        }
        let scan = scan_captures(&paths)?;
        let universe = Universe::from_symbols(scan.symbols).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no trade or quote in the capture files ({e})"),
            )
        })?;
        let (a, b) = scan.span.unwrap_or((0, 0));
        let mut files = CaptureFiles {
            book: L1Book::new(universe.len()),
            depth: vec![None; universe.len()],
            files: Vec::new(),
            paths,
            universe,
            counts: ReplayCounts::default(),
            span_ns: b - a + LOOP_GAP_NS,
            loop_offset_ns: 0,
            passes: 0,
            next: None,
        };
        files.open_files()?;
        Ok(CaptureReplay { files, replayer: Replayer::new(opts), speed: opts.speed })
    }

    /// Counts so far (all passes together).
    pub fn counts(&self) -> ReplayCounts {
        self.files.counts
    }

    /// Completed passes over the files.
    pub fn loops(&self) -> u64 {
        self.replayer.loops
    }
}

impl CaptureFiles {
    fn open_files(&mut self) -> io::Result<()> {
        self.files.clear();
        for p in &self.paths {
            let mut f = CaptureFile::open(p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            f.advance(&self.universe, &mut self.counts, self.passes == 0);
            self.files.push(f);
        }
        Ok(())
    }
}

impl Recording for CaptureFiles {
    fn next_ns(&mut self) -> Option<u64> {
        let (capture_ns, i) = self
            .files
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.head.as_ref().map(|h| (h.capture_ns, i)))
            .min()?;
        let rec_ns = capture_ns.saturating_add(self.loop_offset_ns);
        self.next = Some((i, rec_ns));
        Some(rec_ns)
    }

    fn take(&mut self) -> Option<FeedPoll> {
        let (i, rec_ns) = self.next.take()?;
        let file = self.files.get_mut(i)?;
        let head = file.head.take()?;
        file.advance(&self.universe, &mut self.counts, self.passes == 0);
        match head.event {
            HeadEvent::L1(e) => {
                let mut t = self.book.apply(head.id, &e)?;
                t.ts_event = rec_ns;
                Some(FeedPoll::Tick(t))
            }
            HeadEvent::Depth(e) => {
                let slot = self.depth.get_mut(head.id as usize)?;
                let book = slot.get_or_insert_with(DepthBook::default);
                let name = self.universe.name(head.id);
                book.on_event(e, name, &mut self.counts)
                    .then_some(FeedPoll::Book { symbol: head.id, ts_event: rec_ns })
            }
        }
    }

    fn restart(&mut self) -> Result<(), String> {
        self.passes += 1;
        self.loop_offset_ns += self.span_ns;
        // The files' update ids start over: each book is rebuilt from the next pass's snapshot.
        self.depth.iter_mut().for_each(|d| *d = None);
        self.open_files().map_err(|e| e.to_string())
    }

    fn log_pass(&self, pass: u64) {
        tracing::info!(files = self.paths.len(), pass, counts = %self.counts, "capture replay pass done");
    }
}

/// One symbol's order book in a capture replay: its builder, created by the first diff
/// (whose `pu` says spot or futures), and a snapshot that came before any diff.
#[derive(Clone, Debug, Default)]
struct DepthBook {
    builder: Option<BookBuilder>,
    early_snapshot: Option<book::Snapshot>,
    /// The book was crossed after the last event (it is reported stale until it is not).
    crossed: bool,
}

impl DepthBook {
    /// Feeds one depth event; returns whether the book's published state changed (levels, or
    /// live/stale). Breaks and crossed books are counted and logged.
    fn on_event(&mut self, e: DepthEvent, symbol: &str, counts: &mut ReplayCounts) -> bool {
        let (builder, outcome) = match e {
            DepthEvent::Diff(d) => {
                let builder = self.builder.get_or_insert_with(|| {
                    BookBuilder::new(if d.prev.is_some() { Continuity::Futures } else { Continuity::Spot })
                });
                let mut out = builder.on_diff(&d);
                if let Some(s) = self.early_snapshot.take() {
                    // The diff that decided the rules arrived after the snapshot: load it now.
                    out = builder.on_snapshot(&s);
                }
                (builder, out)
            }
            DepthEvent::Snapshot(s) => match self.builder.as_mut() {
                Some(b) => {
                    let out = b.on_snapshot(&s);
                    (b, out)
                }
                None => {
                    self.early_snapshot = Some(s);
                    return false;
                }
            },
        };
        let was_crossed = self.crossed;
        match outcome {
            Outcome::Applied { crossed, .. } => {
                self.crossed = crossed;
                if crossed {
                    counts.book_crossed += 1;
                    if !was_crossed {
                        tracing::warn!(
                            symbol,
                            "order book crossed after a diff; not published until it uncrosses"
                        );
                    }
                }
                true
            }
            Outcome::Rebuilt { crossed, .. } => {
                self.crossed = crossed;
                true
            }
            Outcome::Break { expected, got } => {
                counts.book_breaks += 1;
                tracing::warn!(
                    symbol,
                    expected,
                    got,
                    update_id = builder.last_update_id(),
                    "order book continuity break: the book is stale until the next snapshot"
                );
                true
            }
            Outcome::Buffered | Outcome::Dropped | Outcome::Loaded { .. } => false,
        }
    }

    fn health(&self) -> BookHealth {
        match &self.builder {
            Some(b) if b.is_live() && !self.crossed => BookHealth::Live,
            _ => BookHealth::Stale,
        }
    }
}

impl FeedSource for CaptureReplay {
    fn universe(&self) -> &Universe {
        &self.files.universe
    }

    fn book_levels(
        &self,
        symbol: u32,
        depth: usize,
        bids: &mut Vec<(i64, i64)>,
        asks: &mut Vec<(i64, i64)>,
    ) -> Option<BookHealth> {
        let d = self.files.depth.get(symbol as usize)?.as_ref()?;
        d.builder.as_ref()?.book().top(depth, bids, asks);
        Some(d.health())
    }

    fn poll(&mut self, now_ns: u64) -> FeedPoll {
        self.replayer.poll(&mut self.files, now_ns)
    }

    fn describe(&self) -> String {
        let names: Vec<_> = self.files.paths.iter().map(|p| p.display().to_string()).collect();
        format!(
            "capture replay({}; {} symbols; speed {}{})",
            names.join(","),
            self.files.universe.len(),
            self.speed,
            if self.replayer.looped { ", looped" } else { "" }
        )
    }
}

/// Replays a recorded tick file (`--feed ticks:FILE`).
pub struct TickReplay {
    file: TickFile,
    replayer: Replayer,
    speed: Speed,
}

/// The tick file of a [`TickReplay`]: its [`Recording`].
struct TickFile {
    path: PathBuf,
    reader: TickReader,
    universe: Universe,
    /// Per symbol: added to recorded seqs (grows by the last seq at each loop).
    seq_offset: Vec<u64>,
    last_seq: Vec<u64>,
    first_ts: Option<u64>,
    last_ts: u64,
    ts_offset: u64,
    /// The record `next_ns` announced.
    pending: Option<Record>,
    replayed: u64,
    /// The latest recorded book of each symbol that has one.
    books: Vec<Option<BookRecord>>,
}

impl TickReplay {
    /// Opens a tick file for replay.
    ///
    /// # Errors
    /// If the file cannot be read or is not a tick file.
    pub fn open(path: PathBuf, opts: ReplayOptions) -> Result<Self, TickFileError> {
        let reader = TickReader::open(&path)?;
        let universe = reader.universe().clone();
        let n = universe.len();
        let file = TickFile {
            path,
            reader,
            universe,
            seq_offset: vec![0; n],
            last_seq: vec![0; n],
            first_ts: None,
            last_ts: 0,
            ts_offset: 0,
            pending: None,
            replayed: 0,
            books: vec![None; n],
        };
        Ok(TickReplay { file, replayer: Replayer::new(opts), speed: opts.speed })
    }
}

impl TickFile {
    /// The next recorded tick with loop offsets applied, or `None` at the end of a pass.
    fn next_recorded(&mut self) -> Option<Record> {
        match self.reader.next_record() {
            Ok(Some(Record::Tick(mut t))) => {
                let i = t.symbol as usize;
                self.first_ts.get_or_insert(t.ts_event);
                self.last_ts = self.last_ts.max(t.ts_event);
                t.seq += self.seq_offset[i];
                t.ts_event = t.ts_event.saturating_add(self.ts_offset);
                self.last_seq[i] = t.seq;
                Some(Record::Tick(t))
            }
            Ok(Some(Record::Book(mut b))) => {
                self.first_ts.get_or_insert(b.ts_event);
                self.last_ts = self.last_ts.max(b.ts_event);
                b.ts_event = b.ts_event.saturating_add(self.ts_offset);
                Some(Record::Book(b))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "tick file replay stops here");
                None
            }
        }
    }
}

impl Recording for TickFile {
    fn next_ns(&mut self) -> Option<u64> {
        if self.pending.is_none() {
            self.pending = self.next_recorded();
        }
        self.pending.as_ref().map(|r| match r {
            Record::Tick(t) => t.ts_event,
            Record::Book(b) => b.ts_event,
        })
    }

    fn take(&mut self) -> Option<FeedPoll> {
        match self.pending.take()? {
            Record::Tick(t) => {
                self.replayed += 1;
                Some(FeedPoll::Tick(t))
            }
            Record::Book(b) => {
                let (symbol, ts_event) = (b.symbol, b.ts_event);
                *self.books.get_mut(symbol as usize)? = Some(b);
                Some(FeedPoll::Book { symbol, ts_event })
            }
        }
    }

    fn restart(&mut self) -> Result<(), String> {
        self.reader = TickReader::open(&self.path).map_err(|e| e.to_string())?;
        self.seq_offset.clone_from(&self.last_seq);
        let span = self.last_ts.saturating_sub(self.first_ts.unwrap_or(self.last_ts));
        self.ts_offset = self.ts_offset.saturating_add(span + LOOP_GAP_NS);
        self.first_ts = None;
        self.last_ts = 0;
        Ok(())
    }

    fn log_pass(&self, pass: u64) {
        tracing::info!(file = %self.path.display(), pass, replayed = self.replayed, "tick file replay pass done");
    }
}

impl FeedSource for TickReplay {
    fn universe(&self) -> &Universe {
        &self.file.universe
    }

    fn book_levels(
        &self,
        symbol: u32,
        depth: usize,
        bids: &mut Vec<(i64, i64)>,
        asks: &mut Vec<(i64, i64)>,
    ) -> Option<BookHealth> {
        let b = self.file.books.get(symbol as usize)?.as_ref()?;
        crate::source::copy_levels(&b.bids, &b.asks, depth, bids, asks);
        Some(b.health)
    }

    fn poll(&mut self, now_ns: u64) -> FeedPoll {
        self.replayer.poll(&mut self.file, now_ns)
    }

    fn describe(&self) -> String {
        format!(
            "tick file replay({}; {} symbols; speed {}{})",
            self.file.path.display(),
            self.file.universe.len(),
            self.speed,
            if self.replayer.looped { ", looped" } else { "" }
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Tick;

    #[test]
    fn speeds_parse_and_refuse_nonsense() {
        assert_eq!("max".parse::<Speed>().unwrap(), Speed::Max);
        assert_eq!("10".parse::<Speed>().unwrap(), Speed::Factor(10.0));
        assert_eq!("0.5".parse::<Speed>().unwrap(), Speed::Factor(0.5));
        for bad in ["0", "-1", "nan", "inf", "fast", ""] {
            assert!(bad.parse::<Speed>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pacer_scales_recording_time() {
        let mut p = Pacer::new(Speed::Factor(10.0));
        assert_eq!(p.due(5_000_000_000, 100), 100);
        assert_eq!(p.due(6_000_000_000, 200), 100 + 100_000_000);
        // An event recorded before the first (out of order) is due at once.
        assert_eq!(p.due(1, 300), 100);
        let mut m = Pacer::new(Speed::Max);
        assert_eq!(m.due(u64::MAX, 7), 7);
    }

    fn write_capture(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    fn trade(ns: u64, sym: &str, p: &str) -> String {
        format!(r#"{ns} {{"stream":"x@trade","data":{{"e":"trade","s":"{sym}","p":"{p}","q":"1"}}}}"#)
    }

    fn quote(ns: u64, sym: &str, b: &str, a: &str) -> String {
        format!(
            r#"{ns} {{"stream":"x@bookTicker","data":{{"u":1,"s":"{sym}","b":"{b}","B":"2","a":"{a}","A":"3"}}}}"#
        )
    }

    #[test]
    fn a_looped_replay_of_a_file_without_ticks_ends() {
        let dir = tempdir();
        let path = dir.join("empty.ticks");
        let universe = Universe::load_default().unwrap();
        crate::tickfile::TickWriter::create(&path, &universe).unwrap().finish().unwrap();
        let mut r = TickReplay::open(path, ReplayOptions { speed: Speed::Max, looped: true }).unwrap();
        assert!(drain(&mut r).is_empty(), "a pass with no tick is not started over");
    }

    fn drain(src: &mut dyn FeedSource) -> Vec<Tick> {
        let mut out = Vec::new();
        let mut now = 0;
        for _ in 0..100_000 {
            match src.poll(now) {
                FeedPoll::Tick(t) => out.push(t),
                FeedPoll::Pending { until_ns } => now = until_ns.unwrap_or(now + 1),
                FeedPoll::End => return out,
                FeedPoll::Book { .. } => {}
                FeedPoll::Status { .. } => panic!("a replay has no upstream"),
            }
        }
        panic!("source never ended");
    }

    #[test]
    fn files_merge_by_capture_time_and_malformed_lines_are_counted() {
        let dir = tempdir();
        let a = write_capture(
            &dir,
            "a.txt",
            &[quote(10, "BBB", "1", "2"), "garbage".into(), trade(30, "BBB", "1.5")],
        );
        let b = write_capture(
            &dir,
            "b.txt",
            &[
                trade(20, "AAA", "7"),
                r#"25 {"lastUpdateId":1,"bids":[],"asks":[]}"#.into(),
                quote(40, "AAA", "6", "8"),
            ],
        );
        let mut r =
            CaptureReplay::open(vec![a, b], ReplayOptions { speed: Speed::Max, looped: false }).unwrap();
        assert_eq!(r.universe().name(0), "AAA");
        let ticks = drain(&mut r);
        let times: Vec<u64> = ticks.iter().map(|t| t.ts_event).collect();
        assert_eq!(times, [10, 20, 30, 40]);
        let c = r.counts();
        assert_eq!((c.lines, c.trades, c.quotes, c.snapshots, c.malformed), (6, 2, 2, 1, 1));
        let last_aaa = ticks.iter().rfind(|t| t.symbol == 0).unwrap();
        assert_eq!(
            (last_aaa.seq, last_aaa.bid, last_aaa.last, last_aaa.volume),
            (2, 600_000_000, 700_000_000, 100_000_000)
        );
    }

    /// A `depthUpdate` line (spot, or futures with `pu`) at capture time `ns`.
    fn diff(ns: u64, first: u64, last: u64, pu: Option<u64>, bids: &str, asks: &str) -> String {
        let pu = pu.map(|p| format!(r#","pu":{p}"#)).unwrap_or_default();
        format!(
            r#"{ns} {{"stream":"xusdt@depth","data":{{"e":"depthUpdate","E":1,"s":"XUSDT","U":{first},"u":{last}{pu},"b":[{bids}],"a":[{asks}]}}}}"#
        )
    }

    /// Replays `lines` (as `xusdt_test.txt`) to the end; returns the replay, the number of
    /// book changes and the top 5 levels and health after the last one.
    #[allow(clippy::type_complexity)]
    fn replay_depth(
        lines: &[String],
    ) -> (CaptureReplay, usize, Vec<(i64, i64)>, Vec<(i64, i64)>, Option<BookHealth>) {
        let dir = tempdir();
        let mut all = vec![quote(1, "XUSDT", "99", "101")];
        all.extend_from_slice(lines);
        let a = write_capture(&dir, "xusdt_test.txt", &all);
        let mut r = CaptureReplay::open(vec![a], ReplayOptions { speed: Speed::Max, looped: false }).unwrap();
        let (mut changes, mut bids, mut asks, mut health) = (0, Vec::new(), Vec::new(), None);
        loop {
            match r.poll(0) {
                FeedPoll::Book { symbol, .. } => {
                    changes += 1;
                    health = r.book_levels(symbol, 5, &mut bids, &mut asks);
                }
                FeedPoll::End => break,
                _ => {}
            }
        }
        (r, changes, bids, asks, health)
    }

    const SNAP: &str =
        r#"10 {"lastUpdateId":100,"bids":[["99","1"],["98","2"]],"asks":[["101","1"],["102","2"]]}"#;

    #[test]
    fn a_spot_capture_builds_its_book_and_a_missing_diff_is_one_break() {
        let lines = vec![
            diff(5, 90, 95, None, r#"["97","9"]"#, ""), // before the snapshot, contained in it
            SNAP.to_string(),
            diff(20, 96, 101, None, r#"["99","3"]"#, ""), // bridges 101
            diff(30, 102, 104, None, "", r#"["101","0"],["103","4"]"#),
        ];
        let (r, changes, bids, asks, health) = replay_depth(&lines);
        assert_eq!(health, Some(BookHealth::Live));
        assert_eq!(changes, 2);
        assert_eq!(bids, [(99 * P, 3 * P), (98 * P, 2 * P)]);
        assert_eq!(asks, [(102 * P, 2 * P), (103 * P, 4 * P)]);
        assert_eq!((r.counts().depth, r.counts().snapshots, r.counts().book_breaks), (3, 1, 0));
        // The same with the middle diff removed: one break, the book stale with its last levels.
        let broken = [lines[0].clone(), lines[1].clone(), lines[3].clone()];
        let (r, changes, _, _, health) = replay_depth(&broken);
        assert_eq!((r.counts().book_breaks, changes, health), (1, 1, Some(BookHealth::Stale)));
    }

    #[test]
    fn a_futures_capture_chains_diffs_by_pu() {
        let lines = vec![
            SNAP.to_string(),
            diff(20, 95, 100, Some(94), r#"["99","5"]"#, ""), // U <= 100 <= u: bridges
            diff(30, 101, 107, Some(100), r#"["98","0"]"#, ""), // pu = previous u
            // Spot rules would call this a gap (U != 108); futures chain by pu.
            diff(40, 110, 112, Some(107), "", r#"["101","7"]"#),
        ];
        let (r, changes, bids, asks, health) = replay_depth(&lines);
        assert_eq!((health, changes, r.counts().book_breaks), (Some(BookHealth::Live), 3, 0));
        assert_eq!(bids, [(99 * P, 5 * P)]);
        assert_eq!(asks[0], (101 * P, 7 * P));
        // A wrong pu breaks the chain.
        let mut bad = lines.clone();
        bad[3] = diff(40, 110, 112, Some(108), "", r#"["101","7"]"#);
        let (r, _, _, _, health) = replay_depth(&bad);
        assert_eq!((r.counts().book_breaks, health), (1, Some(BookHealth::Stale)));
    }

    const P: i64 = crate::SCALE;

    #[test]
    fn a_looped_replay_keeps_time_and_seq_rising() {
        let dir = tempdir();
        let a = write_capture(&dir, "a.txt", &[quote(1_000, "X", "1", "2"), trade(2_000, "X", "1.5")]);
        let mut r = CaptureReplay::open(vec![a], ReplayOptions { speed: Speed::Max, looped: true }).unwrap();
        let mut now = 0;
        let mut ticks = Vec::new();
        while ticks.len() < 6 {
            match r.poll(now) {
                FeedPoll::Tick(t) => ticks.push(t),
                FeedPoll::Pending { until_ns } => now = until_ns.unwrap_or(now + 1),
                FeedPoll::Book { .. } => {}
                FeedPoll::End | FeedPoll::Status { .. } => panic!("a looped replay ended"),
            }
        }
        let seqs: Vec<u64> = ticks.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        assert!(ticks.windows(2).all(|w| w[0].ts_event < w[1].ts_event));
        assert_eq!(r.loops(), 2);
    }

    #[test]
    fn paced_replay_waits_for_the_recorded_spacing() {
        let dir = tempdir();
        let a = write_capture(
            &dir,
            "a.txt",
            &[quote(1_000_000_000, "X", "1", "2"), trade(1_500_000_000, "X", "1.5")],
        );
        let mut r =
            CaptureReplay::open(vec![a], ReplayOptions { speed: Speed::Factor(2.0), looped: false }).unwrap();
        assert!(matches!(r.poll(100), FeedPoll::Tick(_)));
        assert_eq!(r.poll(101), FeedPoll::Pending { until_ns: Some(100 + 250_000_000) });
        assert!(matches!(r.poll(100 + 250_000_000), FeedPoll::Tick(_)));
        assert_eq!(r.poll(100 + 250_000_001), FeedPoll::End);
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "tickgate-feeds-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
