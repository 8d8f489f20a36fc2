//! A [`DrvDiff`] in nix-diff's human-readable form
//! (`Nix.Diff.Render.HumanReadable`): `- old` / `+ new` lines, `•`
//! explanations, inputs indented by two, text diffs with `←old←→new→`
//! (or colours on a terminal).

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Changed, DrvDiff, EnvDiff, InputDrvDiff, Item, Orientation, OutputStructure, SourceFileDiff,
    TextDiff,
};

/// How to print.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    pub orientation: Orientation,
    /// ANSI colours (a terminal).
    pub color: bool,
    /// Show only this many unchanged chunks around each change.
    pub context: Option<usize>,
}

/// Renders `diff` (every line ends with a newline).
pub fn render(diff: &DrvDiff, options: RenderOptions) -> String {
    let mut r = Renderer {
        o: options,
        indent: 0,
        out: String::new(),
    };
    r.diff(diff);
    r.out
}

struct Renderer {
    o: RenderOptions,
    indent: usize,
    out: String,
}

fn explain(s: &str) -> String {
    format!("• {s}")
}

impl Renderer {
    fn echo(&mut self, text: &str) {
        for _ in 0..self.indent {
            self.out.push(' ');
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn minus(&self, s: &str) -> String {
        if self.o.color {
            format!("\x1b[1;31m- {s}\x1b[0m")
        } else {
            format!("- {s}")
        }
    }

    fn plus(&self, s: &str) -> String {
        if self.o.color {
            format!("\x1b[1;32m+ {s}\x1b[0m")
        } else {
            format!("+ {s}")
        }
    }

    /// Each `before` item with `-`, then each `now` item with `+`.
    fn both_sides<T>(&mut self, c: &Changed<T>, mut each: impl FnMut(&mut Self, bool, &T)) {
        each(self, false, &c.before);
        each(self, true, &c.now);
    }

    fn sign(&self, now: bool, s: &str) -> String {
        if now {
            self.plus(s)
        } else {
            self.minus(s)
        }
    }

    fn structure(&mut self, c: &Changed<OutputStructure>) {
        self.both_sides(c, |r, now, s| {
            let line = r.sign(now, &format!("{}{}", s.path, outputs(&s.outputs)));
            r.echo(&line);
        });
    }

    fn diff(&mut self, d: &DrvDiff) {
        match d {
            DrvDiff::Same => {}
            DrvDiff::AlreadyCompared => {
                self.echo(&explain("These two derivations have already been compared"))
            }
            DrvDiff::NamesDontMatch(s) => {
                self.structure(s);
                self.echo(&explain("The derivation names do not match"));
            }
            DrvDiff::OutputsDontMatch(s) => {
                self.structure(s);
                self.echo(&explain("The requested outputs do not match"));
            }
            DrvDiff::Differs(d) => {
                self.structure(&d.structure);
                if let Some(extra) = &d.outputs.extra {
                    self.echo(&explain("The set of outputs do not match:"));
                    self.both_sides(extra, |r, now, m| {
                        for k in m.keys() {
                            let line = format!("    {}", r.sign(now, &format!("{{{k}}}")));
                            r.echo(&line);
                        }
                    });
                }
                for (name, algo) in &d.outputs.hash_algo {
                    self.echo(&explain(&format!("{{{name}}}:")));
                    self.echo(&explain("    Hash algorithm:"));
                    self.both_sides(algo, |r, now, a| {
                        let line = format!("        {}", r.sign(now, a));
                        r.echo(&line);
                    });
                }
                if let Some(p) = &d.platform {
                    self.echo(&explain("The platforms do not match"));
                    self.both_sides(p, |r, now, v| {
                        let line = format!("    {}", r.sign(now, v));
                        r.echo(&line);
                    });
                }
                if let Some(b) = &d.builder {
                    self.echo(&explain("The builders do not match"));
                    self.both_sides(b, |r, now, v| {
                        let line = format!("    {}", r.sign(now, v));
                        r.echo(&line);
                    });
                }
                if let Some(args) = &d.args {
                    self.echo(&explain("The arguments do not match"));
                    for a in args {
                        let line = match a {
                            Item::Old(a) => self.minus(a),
                            Item::New(a) => self.plus(a),
                            Item::Both(a) => explain(a),
                        };
                        self.echo(&format!("    {line}"));
                    }
                }
                if let Some(names) = &d.sources.extra_names {
                    self.echo(&explain("The set of input source names do not match:"));
                    self.names(names);
                }
                for f in &d.sources.files {
                    match f {
                        SourceFileDiff::One { name, content } => {
                            self.echo(&explain(&format!(
                                "The input source named `{name}` differs"
                            )));
                            if let Some(c) = content {
                                let text = self.text(c);
                                self.echo(&format!("    {text}"));
                            }
                        }
                        SourceFileDiff::Some { name, paths } => {
                            self.echo(&explain(&format!(
                                "The input sources named `{name}` differ"
                            )));
                            self.both_sides(paths, |r, now, ps| {
                                for p in ps {
                                    let line = format!("    {}", r.sign(now, p));
                                    r.echo(&line);
                                }
                            });
                        }
                    }
                }
                if let Some(names) = &d.inputs.extra_names {
                    self.echo(&explain("The set of input derivation names do not match:"));
                    self.names(names);
                }
                for i in &d.inputs.drvs {
                    match i {
                        InputDrvDiff::One { name, diff } => {
                            self.echo(&explain(&format!(
                                "The input derivation named `{name}` differs"
                            )));
                            self.indent += 2;
                            self.diff(diff);
                            self.indent -= 2;
                        }
                        InputDrvDiff::Some { name, extra } => {
                            self.echo(&explain(&format!(
                                "The set of input derivations named `{name}` do not match"
                            )));
                            self.both_sides(
                                extra,
                                |r, now, m: &BTreeMap<String, BTreeSet<String>>| {
                                    for (p, outs) in m {
                                        let line = format!(
                                            "    {}",
                                            r.sign(now, &format!("{p}{}", outputs(outs)))
                                        );
                                        r.echo(&line);
                                    }
                                },
                            );
                        }
                    }
                }
                match &d.env {
                    None => self.echo(&explain("Skipping environment comparison")),
                    Some(EnvDiff::Equal) => {}
                    Some(EnvDiff::Differs { extra, values }) => {
                        self.echo(&explain("The environments do not match:"));
                        self.both_sides(extra, |r, now, m| {
                            for (k, v) in m {
                                let line = format!("    {}", r.sign(now, &format!("{k}={v}")));
                                r.echo(&line);
                            }
                        });
                        for (k, v) in values {
                            let text = self.text(v);
                            self.echo(&format!("    {k}={text}"));
                        }
                    }
                }
            }
        }
    }

    fn names(&mut self, names: &Changed<BTreeSet<String>>) {
        self.both_sides(names, |r, now, set| {
            for n in set {
                let line = format!("    {}", r.sign(now, n));
                r.echo(&line);
            }
        });
    }

    /// nix-diff's `renderText`: chunks marked, long results set on lines of
    /// their own between `''`.
    fn text(&self, diff: &TextDiff) -> String {
        let chunks: Vec<&Item<String>> = match self.o.context {
            None => diff.iter().collect(),
            Some(n) => (0..diff.len())
                .filter(|&i| {
                    let lo = i.saturating_sub(n);
                    let hi = (i + n + 1).min(diff.len());
                    diff[lo..hi].iter().any(|c| !matches!(c, Item::Both(_)))
                })
                .map(|i| &diff[i])
                .collect(),
        };
        let mut text = String::new();
        for c in chunks {
            text.push_str(&self.chunk(c));
        }
        if self.indent + text.chars().count() >= 80 {
            let prefix = " ".repeat(self.indent);
            let mut long = String::from("''\n");
            // Haskell's `Text.lines`: split at '\n' only, no empty last line.
            let body = text.strip_suffix('\n').unwrap_or(&text);
            for line in body.split('\n').filter(|_| !text.is_empty()) {
                long.push_str(&prefix);
                long.push_str("    ");
                long.push_str(line);
                long.push('\n');
            }
            long.push_str(&prefix);
            long.push_str("''");
            long
        } else {
            text
        }
    }

    fn chunk(&self, c: &Item<String>) -> String {
        let boundary = |ch: char| match self.o.orientation {
            Orientation::Line => ch == '\n',
            _ => ch.is_whitespace(),
        };
        let colour = |code: &str, t: &str| {
            if self.o.orientation == Orientation::Character {
                format!("\x1b[{code}m{t}\x1b[0m")
            } else {
                let cut = t.find(boundary).unwrap_or(t.len());
                format!("\x1b[{code}m{}\x1b[0m{}", &t[..cut], &t[cut..])
            }
        };
        match (c, self.o.color, self.o.orientation) {
            (Item::Old(t), true, _) => colour("41", t),
            (Item::New(t), true, _) => colour("42", t),
            (Item::Both(t), true, _) => format!("\x1b[1;2m{t}\x1b[0m"),
            (Item::Old(t), false, Orientation::Line) => format!("- {t}"),
            (Item::New(t), false, Orientation::Line) => format!("+ {t}"),
            (Item::Both(t), false, Orientation::Line) => format!("  {t}"),
            (Item::Old(t), false, _) => format!("←{t}←"),
            (Item::New(t), false, _) => format!("→{t}→"),
            (Item::Both(t), false, _) => t.clone(),
        }
    }
}

/// `:{out,dev}`.
fn outputs(o: &BTreeSet<String>) -> String {
    format!(":{{{}}}", o.iter().cloned().collect::<Vec<_>>().join(","))
}
