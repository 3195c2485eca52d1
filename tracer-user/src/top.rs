//! `leakscope top`: a live terminal view of the processes with the most and the
//! fastest-growing blocked populations, their top sites and verdicts, refreshed after
//! every scan; `q` quits.
//!
//! [`render`] turns a window summary into screen lines (pure, tested); [`run`] owns
//! the terminal (raw mode, alternate screen, restored on every exit path) and runs the
//! shared scan loop ([`crate::watch::driver`]) on a rolling window, its sink the screen.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use crossterm::{
    cursor,
    event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    execute, queue,
    style::{Attribute, Color, Print, ResetColor, SetAttribute, SetForegroundColor},
    terminal::{self, ClearType},
};

use crate::{
    error::ScanError,
    forecast::LimitKind,
    report::human_duration,
    sanitize,
    summary::{ProcessSummary, SiteSummary, WindowSummary},
    verdict::{Outcome, VerdictPolicy},
    watch::{Driver, Flow, ScanStats, Schedule, Sink, WatchArgs, Watcher, preflight},
};

/// How `top` watches.
#[derive(Clone, Debug)]
pub struct TopOptions {
    /// What to watch and how (the flags every watching command shares); `--interval`
    /// also paces the screen.
    pub watch: WatchArgs,
    /// History the verdicts judge (a rolling window).
    pub window: Duration,
}

/// How a screen line is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineStyle {
    Plain,
    /// The title and column headings.
    Heading,
    Leak,
    Suspect,
}

/// Sites shown under a leaking or suspect process.
const SITES_SHOWN: usize = 3;

/// Leaks first, then the fastest-growing, then the largest populations.
fn rank(processes: &[ProcessSummary]) -> Vec<&ProcessSummary> {
    let mut ranked: Vec<&ProcessSummary> = processes.iter().filter(|p| p.alive).collect();
    ranked.sort_by(|a, b| {
        b.is_leak()
            .cmp(&a.is_leak())
            .then(b.is_suspect().cmp(&a.is_suspect()))
            .then(b.growth_per_min.total_cmp(&a.growth_per_min))
            .then(b.waiters.cmp(&a.waiters))
            .then(a.key.cmp(&b.key))
    });
    ranked
}

fn verdict_of(outcome: Outcome) -> (&'static str, LineStyle) {
    match outcome {
        Outcome::Leak => ("LEAK", LineStyle::Leak),
        Outcome::Suspect => ("suspect", LineStyle::Suspect),
        Outcome::Ok => ("ok", LineStyle::Plain),
    }
}

/// Cuts `line` to `width` characters.
fn fit(mut line: String, width: usize) -> String {
    if let Some((cut, _)) = line.char_indices().nth(width) {
        line.truncate(cut);
    }
    line
}

/// A limit's name in a few letters, for the LIMIT IN column.
fn short_limit(limit: LimitKind) -> &'static str {
    match limit {
        LimitKind::CgroupPids => "pids",
        LimitKind::PidMax => "pid_max",
        LimitKind::ThreadsMax => "thr-max",
        LimitKind::Nproc => "nproc",
        LimitKind::MaxMapCount => "maps",
        LimitKind::CgroupMemory(_) => "memory",
        LimitKind::HostMemory => "hostmem",
    }
}

/// The first limit a leaking process reaches and when: "pids 1m35s"; empty without a
/// forecast.
fn limit_in(p: &ProcessSummary) -> String {
    let Some(first) = p.exhaustion.as_ref().and_then(|e| e.first()) else {
        return String::new();
    };
    let eta = first.eta_s.as_ref().copied().unwrap_or(0.0);
    format!("{} {}", short_limit(first.limit), human_duration(eta))
}

fn process_line(p: &ProcessSummary) -> (LineStyle, String) {
    let (verdict, style) = verdict_of(p.outcome);
    let comm: String = sanitize::log_text(&p.facts.comm).chars().take(15).collect();
    let runtime: String = p.facts.runtime.to_string().chars().take(7).collect();
    let line = format!(
        "{:>7} {comm:<15} {runtime:<7} {:>7} {:>+9.1} {verdict:<7} {:>6} {}",
        p.key.pid,
        p.waiters,
        p.growth_per_min,
        human_duration(p.uptime_s),
        limit_in(p)
    );
    (style, line.trim_end().to_string())
}

fn site_line(s: &SiteSummary) -> (LineStyle, String) {
    let (verdict, style) = verdict_of(s.outcome());
    let line = format!(
        "        {:>6} {:>+8.1}/m {verdict:<7} {}",
        s.count, s.judgement.growth_per_min, s.label
    );
    (style, line)
}

/// The screen for one window: a title, column headings, then one line per process
/// (leaks first, then the fastest-growing) with the top sites of leaking and suspect
/// processes under it; at most `height` lines of at most `width` characters.
pub fn render(
    summary: &WindowSummary,
    stats: &ScanStats,
    width: usize,
    height: usize,
) -> Vec<(LineStyle, String)> {
    let ranked = rank(&summary.processes);
    let leaks = ranked.iter().filter(|p| p.is_leak()).count();
    let mut lines = vec![
        (
            LineStyle::Heading,
            format!(
                "leakscope top  {}  window {:.0} s  {} processes, {} waiters  {} leaking  q: quit",
                sanitize::log_text(&summary.host),
                summary.duration_s,
                stats.processes,
                stats.waiters,
                leaks
            ),
        ),
        (
            LineStyle::Heading,
            format!(
                "{:>7} {:<15} {:<7} {:>7} {:>9} {:<7} {:>6} {}",
                "PID", "COMM", "RUNTIME", "WAITERS", "GROWTH/m", "VERDICT", "UP", "LIMIT IN"
            ),
        ),
    ];
    for p in ranked {
        lines.push(process_line(p));
        if p.outcome != Outcome::Ok {
            let mut sites: Vec<&SiteSummary> = p.sites.iter().collect();
            sites.sort_by(|a, b| {
                b.is_leak()
                    .cmp(&a.is_leak())
                    .then(b.judgement.is_suspect().cmp(&a.judgement.is_suspect()))
                    .then(b.count.cmp(&a.count))
            });
            lines.extend(sites.into_iter().take(SITES_SHOWN).map(site_line));
        }
        if lines.len() >= height {
            break;
        }
    }
    lines.truncate(height);
    lines
        .into_iter()
        .map(|(style, line)| (style, fit(line, width)))
        .collect()
}

/// Restores the terminal however `run` ends (error, panic, `q`).
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let guard = Self;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .context("terminal")?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            ResetColor,
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}

fn draw(lines: &[(LineStyle, String)]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    queue!(out, cursor::MoveTo(0, 0))?;
    for (row, (style, text)) in lines.iter().enumerate() {
        queue!(
            out,
            cursor::MoveTo(0, row as u16),
            terminal::Clear(ClearType::CurrentLine)
        )?;
        match style {
            LineStyle::Plain => queue!(out, Print(text))?,
            LineStyle::Heading => queue!(
                out,
                SetAttribute(Attribute::Reverse),
                Print(text),
                SetAttribute(Attribute::Reset)
            )?,
            LineStyle::Leak => {
                queue!(out, SetForegroundColor(Color::Red), Print(text), ResetColor)?
            }
            LineStyle::Suspect => queue!(
                out,
                SetForegroundColor(Color::Yellow),
                Print(text),
                ResetColor
            )?,
        }
    }
    queue!(
        out,
        cursor::MoveTo(0, lines.len() as u16),
        terminal::Clear(ClearType::FromCursorDown)
    )?;
    out.flush()
}

/// Whether a key asks to quit: `q`, Esc, or Ctrl-C (raw mode delivers it as a key).
fn is_quit(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
        && (matches!(
            key.code,
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc
        ) || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)))
}

/// Waits for input until `deadline`; returns whether the user quit (a resize only
/// redraws, at the next scan).
fn wait_for_keys(deadline: Instant) -> anyhow::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !event::poll(left).context("terminal input")? {
            return Ok(false);
        }
        if let Event::Key(key) = event::read().context("terminal input")?
            && is_quit(&key)
        {
            return Ok(true);
        }
    }
}

/// Runs the live view until the user quits.
pub fn run(opts: TopOptions) -> anyhow::Result<()> {
    let schedule = Schedule::Window(opts.window);
    preflight(&opts.watch, &schedule)?;
    if !std::io::stdout().is_terminal() {
        bail!("top needs a terminal (use `diagnose` for a report)");
    }
    let mut driver = Driver::open(&opts.watch, schedule)?;
    let _guard = TerminalGuard::enter()?;
    draw(&[(
        LineStyle::Heading,
        "leakscope top: first scan…  q: quit".into(),
    )])?;
    driver.run(&mut Screen {
        policy: VerdictPolicy::default(),
    })
}

/// `top`'s sink: the screen, redrawn after each scan; keys are read while it waits.
struct Screen {
    policy: VerdictPolicy,
}

impl Sink for Screen {
    type Error = anyhow::Error;

    fn scanned(
        &mut self,
        watcher: &mut Watcher,
        scan: Result<ScanStats, ScanError>,
    ) -> anyhow::Result<Flow> {
        let stats = scan?;
        let (summary, _) = watcher.summary(&self.policy, false);
        let (width, height) = terminal::size().unwrap_or((80, 24));
        draw(&render(
            &summary,
            &stats,
            usize::from(width),
            usize::from(height),
        ))?;
        Ok(Flow::Continue)
    }

    fn wait_until(&mut self, deadline: Instant) -> anyhow::Result<Flow> {
        Ok(if wait_for_keys(deadline)? {
            Flow::Stop
        } else {
            Flow::Continue
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::testutil::native_window;

    /// Check that an 80x24 screen lists the leaking process first, in the leak style,
    /// with its leak site under it, the healthy process after, and no line wider than
    /// the terminal.
    #[test]
    fn renders_leaks_first_within_80_columns() {
        let stats = ScanStats {
            processes: 2,
            waiters: 135,
            ..ScanStats::default()
        };
        let lines = render(&native_window(), &stats, 80, 24);
        assert!(
            lines.iter().all(|(_, l)| l.chars().count() <= 80),
            "{lines:#?}"
        );
        assert!(
            lines[0].1.starts_with("leakscope top  h  window 15 s"),
            "{lines:#?}"
        );
        assert!(lines[1].1.contains("PID") && lines[1].1.contains("VERDICT"));
        assert_eq!(lines[2].0, LineStyle::Leak);
        assert!(
            lines[2].1.contains("p9") && lines[2].1.contains("LEAK"),
            "{lines:#?}"
        );
        assert!(lines[2].1.contains("1h02m"), "{lines:#?}");
        assert!(lines[1].1.ends_with("LIMIT IN"), "{lines:#?}");
        assert!(lines[2].1.ends_with("1h02m pids 1m35s"), "{lines:#?}");
        assert_eq!(lines[3].0, LineStyle::Leak);
        assert!(
            lines[3]
                .1
                .contains("thread:futex:leak_on_mutex<leaked_thread")
        );
        let healthy = lines.iter().position(|(_, l)| l.contains("p7")).unwrap();
        assert!(healthy > 3 && lines[healthy].0 == LineStyle::Plain);
        assert_eq!(
            render(&native_window(), &stats, 80, 3).len(),
            3,
            "cut to height"
        );
    }

    /// Check that only `q`, Esc and Ctrl-C quit.
    #[test]
    fn quit_keys() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
    }
}
