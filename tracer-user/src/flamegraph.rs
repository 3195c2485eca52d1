//! The blocked waiters of a window as a flame graph (SVG, rendered by `inferno`): one
//! tower per process, its stacks from the outermost frame up to the wait, each as wide
//! as its waiters (a leaking process's tower also says when it will hit its first
//! limit). The frame each leak site is named after is marked `(leak)` and red;
//! everything else is blue.

use std::fmt::Write as _;

use inferno::flamegraph::{
    self, Options,
    color::{BasicPalette, Color, Palette, PaletteMap},
};

use crate::{
    model::Frame,
    sanitize,
    summary::{ProcessSummary, SiteSummary, WindowSummary},
};

/// Appended to the name of each leak site's own frame.
pub const LEAK_MARK: &str = " (leak)";
const LEAK_RED: Color = Color {
    r: 230,
    g: 40,
    b: 40,
};

/// Text a process controls, made safe for the graph: escaped control characters (XML
/// forbids most of them), and no `;`, which separates frames in the folded format.
fn graph_text(text: &str) -> String {
    sanitize::log_text(text).replace(';', ":")
}

/// A frame's name in the graph.
fn frame_name(frame: &Frame) -> String {
    match (&frame.function, &frame.file, frame.line) {
        (Some(f), Some(file), Some(line)) => {
            let file = file.rsplit('/').next().unwrap_or(file);
            graph_text(&format!("{f} {file}:{line}"))
        }
        (Some(f), _, _) => graph_text(f),
        (None, _, _) => format!("{:#x}", frame.address),
    }
}

/// A process's tower: its name first, so the line starts with it, its pid, and for a
/// leak the first limit it will hit. inferno skips lines that start with `# ` (comments)
/// and trims leading blanks, so a name starting with `#` or a blank has that character
/// escaped: the process keeps its tower.
fn process_name(p: &ProcessSummary) -> String {
    let tag = if p.is_leak() { "LEAK " } else { "" };
    let forecast = p
        .exhaustion
        .as_ref()
        .and_then(|e| e.first())
        .map(|first| graph_text(&format!(": {first}")))
        .unwrap_or_default();
    let comm = graph_text(&p.facts.comm);
    let comm = match comm.chars().next() {
        Some(first) if first == '#' || first.is_whitespace() => {
            let rest = &comm[first.len_utf8()..];
            match u8::try_from(first) {
                Ok(byte) => format!("\\x{byte:02x}{rest}"),
                Err(_) => format!("\\u{{{:x}}}{rest}", first as u32),
            }
        }
        _ => comm,
    };
    format!("{tag}{comm} (pid {}){forecast}", p.key.pid)
}

/// One folded line: `process;outermost;...;innermost;[wait] count`.
fn folded_line(p: &ProcessSummary, site: &SiteSummary, leak_frames: &mut Vec<String>) -> String {
    let mut line = process_name(p);
    for (i, frame) in site.stack.iter().enumerate().rev() {
        let mut name = frame_name(frame);
        if site.is_leak() && site.origin == Some(i) {
            name.push_str(LEAK_MARK);
            leak_frames.push(name.clone());
        }
        let _ = write!(line, ";{name}");
    }
    let _ = write!(
        line,
        ";[{} {}] {}",
        site.kind.name(),
        graph_text(&site.wait),
        site.count
    );
    line
}

/// The SVG flame graph of a window's blocked waiters.
pub fn to_svg(summary: &WindowSummary) -> std::io::Result<Vec<u8>> {
    let mut leak_frames = Vec::new();
    let mut lines: Vec<String> = summary
        .processes
        .iter()
        .flat_map(|p| p.sites.iter().map(move |s| (p, s)))
        .filter(|(_, s)| s.count > 0)
        .map(|(p, s)| folded_line(p, s, &mut leak_frames))
        .collect();
    lines.sort();
    let mut palette = PaletteMap::default();
    for name in leak_frames {
        palette.insert(name, LEAK_RED);
    }
    let mut opts = Options::default();
    opts.title = format!(
        "leakscope: blocked waiters on {}",
        graph_text(&summary.host)
    );
    opts.subtitle = Some(format!(
        "over {:.0} s; leak sites in red, marked{LEAK_MARK}",
        summary.duration_s
    ));
    opts.count_name = "waiters".into();
    opts.colors = Palette::Basic(BasicPalette::Aqua);
    opts.deterministic = true;
    opts.palette_map = Some(&mut palette);
    let mut svg = Vec::new();
    let drawn = flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut svg);
    match drawn {
        // With no waiters inferno still writes a graph saying so, then reports the
        // empty input; a window without waiters is no error.
        Err(_) if lines.is_empty() && !svg.is_empty() => Ok(svg),
        other => other.map(|()| svg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::testutil::native_window;

    /// Check that the SVG names the leak site (marked and red), the leaking process (and
    /// when it hits its first limit) and the healthy pool, with the leak's file and line.
    #[test]
    fn svg_names_the_leak_sites() {
        let svg = String::from_utf8(to_svg(&native_window()).unwrap()).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
        assert!(
            svg.contains("leak_on_mutex leak.c:12 (leak)"),
            "leak site marked"
        );
        assert!(svg.contains("LEAK p9 (pid 9): will hit pids.max (600) in ~1.6 min at +120/min"));
        assert!(svg.contains("pool_worker pool.c:7"));
        assert!(svg.contains("rgb(230,40,40)"), "leak site red");
        let empty = crate::summary::testutil::window(Vec::new());
        assert!(to_svg(&empty).is_ok(), "an empty window is a graph too");
    }

    /// Check that a process whose name starts as a comment of the folded format (`# `)
    /// or with a blank keeps its tower (inferno skipped it: a window of only such a
    /// process was no graph at all, fuzz seed render/comm-comment).
    #[test]
    fn names_that_start_like_comments_keep_their_tower() {
        use std::sync::Arc;
        let mut window = native_window();
        window.processes.retain(|p| !p.is_leak());
        let pid = window.processes[0].key.pid;
        window.processes.truncate(1);
        for (comm, shown) in [("# x", "\\x23 x"), (" y", "\\x20y")] {
            let shown = format!("{shown} (pid {pid})");
            let p = &mut window.processes[0];
            p.facts = Arc::new(crate::model::ProcessFacts {
                comm: comm.into(),
                ..(*p.facts).clone()
            });
            let svg = String::from_utf8(to_svg(&window).expect("a graph")).unwrap();
            assert!(svg.contains(&shown), "{comm:?} not shown as {shown:?}");
        }
    }
}
