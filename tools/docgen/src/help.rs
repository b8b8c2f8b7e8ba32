//! The agent's help constants, read from the text of `agent/src/cli.rs`.

/// One option line of a help text: `  -h, --help   Print help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub short: Option<char>,
    pub long: String,
    /// The value's placeholder (`DIR`, `REL`), when the option takes one.
    pub value: Option<String>,
    pub help: String,
}

#[derive(Debug)]
pub struct Cmd {
    pub name: String,
    /// Its line in the main help's `Commands:` list.
    pub summary: String,
    /// The paragraph before `Usage:` in its own help.
    pub description: String,
    pub usage: String,
    pub options: Vec<Opt>,
    /// False for a command whose help is complete on its own (it lists
    /// `--help` itself, as `verify` does): the common options are not its.
    pub takes_common: bool,
}

#[derive(Debug)]
pub struct Agent {
    /// After `kmm-day1-agent: ` on the main help's first line.
    pub tagline: String,
    pub usage: String,
    /// The main help's text after its lists.
    pub epilogue: String,
    /// `-h`, `-V`: options of the bare command.
    pub global: Vec<Opt>,
    /// Options every command takes.
    pub common: Vec<Opt>,
    pub commands: Vec<Cmd>,
}

/// A help text cut into its parts.
#[derive(Debug, Default)]
struct Text {
    description: String,
    usage: String,
    /// (header, item lines joined with their continuations)
    sections: Vec<(String, Vec<(String, String)>)>,
    epilogue: String,
}

impl Agent {
    pub fn parse(source: &str) -> Result<Agent, String> {
        let get = |name: &str| -> Result<Text, String> {
            let raw = const_str(source, name)
                .ok_or_else(|| format!("agent/src/cli.rs has no `const {name}: &str = \"…\";`"))?;
            Ok(split(&raw))
        };
        let main = get("MAIN_HELP")?;
        let (tagline, _) = main
            .description
            .split_once('\n')
            .unwrap_or((main.description.as_str(), ""));
        let tagline = tagline
            .strip_prefix("kmm-day1-agent: ")
            .ok_or("MAIN_HELP does not start with `kmm-day1-agent: `")?
            .to_string();
        let section = |t: &Text, h: &str| {
            t.sections
                .iter()
                .find(|(n, _)| n == h)
                .map(|(_, i)| i.clone())
        };
        let listed = section(&main, "Commands").ok_or("MAIN_HELP has no `Commands:` list")?;
        let global = options(&section(&main, "Options").unwrap_or_default())?;
        let common_text = get("COMMON_HELP")?;
        let common = options(
            &section(&common_text, "Common options")
                .ok_or("COMMON_HELP has no `Common options:` list")?,
        )?;
        let mut commands = Vec::new();
        for (name, summary) in listed {
            let t = get(&format!("{}_HELP", name.to_ascii_uppercase()))?;
            if t.usage.split_whitespace().nth(1) != Some(name.as_str()) {
                return Err(format!(
                    "{}_HELP's usage line names another command: {}",
                    name.to_ascii_uppercase(),
                    t.usage
                ));
            }
            let opts = options(&section(&t, "Options").unwrap_or_default())?;
            let takes_common = !opts.iter().any(|o| o.long == "help");
            commands.push(Cmd {
                name,
                summary,
                description: t.description,
                usage: t.usage,
                options: opts,
                takes_common,
            });
        }
        Ok(Agent {
            tagline,
            usage: main.usage,
            epilogue: main.epilogue,
            global,
            common,
            commands,
        })
    }

    /// Every option a command accepts: its own, then the common ones.
    pub fn options_of<'a>(&'a self, cmd: &'a Cmd) -> impl Iterator<Item = &'a Opt> {
        let common: &[Opt] = if cmd.takes_common { &self.common } else { &[] };
        cmd.options.iter().chain(common.iter())
    }
}

/// The decoded value of `const NAME: &str = "…";` in `source`.
pub fn const_str(source: &str, name: &str) -> Option<String> {
    let start = source.find(&format!("const {name}: &str = \""))?;
    let body = &source[start..];
    let body = &body[body.find('"')? + 1..];
    decode_literal(body)
}

/// A Rust string literal's value, from just after its opening quote.
pub fn decode_literal(body: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                '0' => out.push('\0'),
                // A line continuation: the newline and the next line's
                // leading whitespace are not part of the string.
                '\n' => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                }
                'x' => {
                    let hex: String = [chars.next()?, chars.next()?].iter().collect();
                    out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

fn split(text: &str) -> Text {
    let mut t = Text::default();
    let all: Vec<&str> = text.lines().collect();
    // COMMON_HELP is only a list: no description, no usage line.
    let rest = match all.iter().position(|l| l.starts_with("Usage: ")) {
        Some(i) => {
            t.description = all[..i].join("\n").trim().to_string();
            t.usage = all[i]["Usage: ".len()..].trim().to_string();
            &all[i + 1..]
        }
        None => &all[..],
    };
    let mut epilogue = Vec::new();
    for &line in rest {
        let indented = line.starts_with(' ');
        if !indented && line.ends_with(':') && !line.trim().is_empty() {
            t.sections
                .push((line.trim_end_matches(':').to_string(), Vec::new()));
            epilogue.clear();
        } else if indented && !line.trim().is_empty() {
            let Some((_, items)) = t.sections.last_mut() else {
                continue;
            };
            let trimmed = line.trim();
            let continuation = !trimmed.starts_with('-') && line.starts_with("     ");
            match items.last_mut() {
                Some((_, help)) if continuation => {
                    help.push(' ');
                    help.push_str(trimmed);
                }
                _ => {
                    let (left, right) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
                    items.push((left.trim().to_string(), right.trim().to_string()));
                }
            }
        } else if !line.trim().is_empty() {
            epilogue.push(line);
        }
    }
    t.epilogue = epilogue.join("\n").trim().to_string();
    t
}

/// `-h, --help` / `--store DIR` items to options.
fn options(items: &[(String, String)]) -> Result<Vec<Opt>, String> {
    items
        .iter()
        .map(|(spec, help)| {
            let mut short = None;
            let mut long = None;
            let mut value = None;
            for word in spec.split([',', ' ']).filter(|w| !w.is_empty()) {
                if let Some(l) = word.strip_prefix("--") {
                    long = Some(l.to_string());
                } else if let Some(s) = word.strip_prefix('-') {
                    short = s.chars().next();
                } else {
                    value = Some(word.to_string());
                }
            }
            let long = long.ok_or_else(|| format!("option `{spec}` has no long name"))?;
            Ok(Opt {
                short,
                long,
                value,
                help: help.clone(),
            })
        })
        .collect()
}
