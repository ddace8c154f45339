//! Which model tier answers a request: the routing rules.
//!
//! Two tiers per provider, a fast (cheap) model and a strong (expensive)
//! one. With `MODEL_ROUTING=auto` the strong tier takes requests that look
//! complex: they ask to analyse, explain, compare or plan (keywords in
//! English, Spanish, Portuguese and Chinese, the languages of the seeds),
//! they are long, or they offer many tools. Everything else, and every
//! request with `MODEL_ROUTING=off`, goes to the fast tier, so a deployment
//! that sets nothing pays what it paid before.
//!
//! A client may ask for `fast`, `strong` or a model name; a name must be on
//! the allow-list (`MODEL_ALLOWED`), since an open choice would let any
//! caller pick the most expensive model there is.
//!
//! The rules run on every request, so they are cheap: the keywords are
//! lowercased once at start-up, the text once per request, and matching is
//! a substring search with a boundary check (no regex). Chinese is written
//! without spaces, so a keyword in CJK script matches anywhere.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The built-in keywords: a request that asks to analyse, explain, compare,
/// plan or evaluate. A trailing `*` matches any word that starts with the
/// stem (`analiz*`: analiza, analizar, analizando); other Latin-script
/// keywords match whole words; CJK keywords match anywhere.
pub const DEFAULT_KEYWORDS: &[&str] = &[
    // English
    "analy*",
    "explain*",
    "compar*",
    "plan",
    "plans",
    "planning",
    "strateg*",
    "evaluat*",
    "step by step",
    "pros and cons",
    "trade-off*", // Spanish
    "analiz*",
    "anális*",
    "explic*",
    "explíc*",
    "planific*",
    "planea*",
    "estrateg*",
    "evalú*",
    "evalua*",
    "paso a paso",
    "ventajas y desventajas", // Portuguese
    "analis*",
    "análise*",
    "expliq*",
    "planej*",
    "estratég*",
    "avali*",
    "passo a passo",
    "prós e contras",
    // Chinese (simplified and traditional)
    "分析",
    "解释",
    "解釋",
    "比较",
    "比較",
    "对比",
    "對比",
    "计划",
    "計劃",
    "规划",
    "規劃",
    "评估",
    "評估",
    "策略",
    "步骤",
    "步驟",
];

/// `ROUTING_MIN_CHARS` when unset: a request this long (in characters)
/// goes to the strong tier.
pub const DEFAULT_MIN_CHARS: usize = 2000;

/// `ROUTING_MIN_TOOLS` when unset: a request offering this many tools goes
/// to the strong tier. The agent's own registry offers four (calculator,
/// search, two memory tools), so the default leaves a plain agent run on
/// the fast tier and routes runs with extra remote tools up.
pub const DEFAULT_MIN_TOOLS: usize = 6;

/// A model tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Fast,
    Strong,
    /// A model the client named from the allow-list that is neither tier's.
    Named,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Fast => "fast",
            Tier::Strong => "strong",
            Tier::Named => "named",
        }
    }
}

/// Why a request went to its tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The client asked (`"model": "strong"` or a name).
    Requested,
    /// A keyword of the rules, as configured.
    Keyword(String),
    /// At least `ROUTING_MIN_CHARS` characters.
    Length,
    /// At least `ROUTING_MIN_TOOLS` tools offered.
    Tools,
    /// No rule applied, or routing is off.
    Default,
    /// The call's part in a multi-agent run (`planner`, `executor`,
    /// `synthesis`), which fixes its tier.
    Role(&'static str),
}

impl Reason {
    /// The label of `model_routes_total`: the kind, never the keyword, so
    /// the series stay few.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Requested => "requested",
            Reason::Keyword(_) => "keyword",
            Reason::Length => "length",
            Reason::Tools => "tools",
            Reason::Default => "default",
            Reason::Role(_) => "role",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Keyword(keyword) => write!(f, "keyword:{keyword}"),
            Reason::Role(role) => write!(f, "role:{role}"),
            other => f.write_str(other.kind()),
        }
    }
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub tier: Tier,
    /// The model name the call goes to first.
    pub model: String,
    pub reason: Reason,
}

impl Route {
    /// What an answer reports.
    pub fn info(&self) -> RouteInfo {
        RouteInfo {
            tier: self.tier,
            reason: self.reason.to_string(),
        }
    }
}

/// The `route` of an answer: the tier chosen and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RouteInfo {
    pub tier: Tier,
    /// `requested`, `keyword:<keyword>`, `length`, `tools`, `default`, or
    /// `role:<role>` for a call of a multi-agent run.
    pub reason: String,
}

/// `MODEL_ROUTING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The fast tier unless the client asks otherwise.
    Off,
    /// The rules choose.
    Auto,
}

/// One keyword, prepared for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Keyword {
    /// Lowercase, without the `*`.
    text: String,
    /// As configured, for the reason and `GET /api/v1/models`.
    shown: String,
    /// A stem: any word that starts with it matches.
    prefix: bool,
    /// CJK script: matches anywhere, with no word boundary.
    anywhere: bool,
}

impl Keyword {
    fn new(raw: &str) -> Option<Keyword> {
        let shown = raw.trim();
        let (stem, prefix) = match shown.strip_suffix('*') {
            Some(stem) => (stem.trim(), true),
            None => (shown, false),
        };
        if stem.is_empty() {
            return None;
        }
        Some(Keyword {
            text: stem.to_lowercase(),
            shown: shown.to_string(),
            prefix,
            anywhere: stem.chars().any(is_cjk),
        })
    }

    /// Whether it occurs in `text` (already lowercase).
    fn occurs_in(&self, text: &str) -> bool {
        if self.anywhere {
            return text.contains(&self.text);
        }
        text.match_indices(&self.text).any(|(at, found)| {
            let before = text[..at].chars().next_back();
            let after = text[at + found.len()..].chars().next();
            !before.is_some_and(is_word_char) && (self.prefix || !after.is_some_and(is_word_char))
        })
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Han, Hiragana, Katakana and Hangul: scripts written without spaces
/// between words (Hangul has them, but a stem rarely ends at one).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// The rules of `MODEL_ROUTING=auto`, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    keywords: Vec<Keyword>,
    /// 0: length never routes.
    pub min_chars: usize,
    /// 0: tools never route.
    pub min_tools: usize,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules::new(DEFAULT_KEYWORDS.iter().copied(), DEFAULT_MIN_CHARS, DEFAULT_MIN_TOOLS)
    }
}

impl Rules {
    /// Rules from keywords as written (`ROUTING_KEYWORDS`, comma-separated);
    /// empty keywords are skipped.
    pub fn new<'a>(keywords: impl IntoIterator<Item = &'a str>, min_chars: usize, min_tools: usize) -> Rules {
        Rules {
            keywords: keywords.into_iter().filter_map(Keyword::new).collect(),
            min_chars,
            min_tools,
        }
    }

    /// The keywords as configured.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.keywords.iter().map(|k| k.shown.as_str())
    }

    /// The strong tier's reason for `text` offering `tools` tools, or
    /// `None` for the fast tier. Keywords first, since they say why best.
    pub fn strong_reason(&self, text: &str, tools: usize) -> Option<Reason> {
        let lower = text.to_lowercase();
        if let Some(keyword) = self.keywords.iter().find(|k| k.occurs_in(&lower)) {
            return Some(Reason::Keyword(keyword.shown.clone()));
        }
        if self.min_chars > 0 && text.len() >= self.min_chars && text.chars().count() >= self.min_chars {
            return Some(Reason::Length);
        }
        if self.min_tools > 0 && tools >= self.min_tools {
            return Some(Reason::Tools);
        }
        None
    }
}

/// The model a client may not pick, with the names it may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {requested:?} is not allowed here; use one of: {}", allowed.join(", "))]
pub struct NotAllowed {
    pub requested: String,
    pub allowed: Vec<String>,
}

/// Chooses a route: the client's request when it names one, else the rules
/// (with `auto`), else the fast tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    pub mode: Mode,
    pub rules: Rules,
    pub fast: String,
    pub strong: String,
    /// Names a request may pick besides `fast` and `strong`.
    pub allowed: Vec<String>,
}

impl Router {
    /// Where a request for `text`, offering `tools` tools, goes; `requested`
    /// is the client's `model` field.
    pub fn route(&self, text: &str, tools: usize, requested: Option<&str>) -> Result<Route, NotAllowed> {
        match requested {
            Some(requested) => self.requested(requested.trim()),
            None => Ok(self.by_rules(text, tools)),
        }
    }

    /// Where a request that names no model goes: the rules with `auto`,
    /// else the fast tier.
    pub fn by_rules(&self, text: &str, tools: usize) -> Route {
        let strong = match self.mode {
            Mode::Auto => self.rules.strong_reason(text, tools),
            Mode::Off => None,
        };
        match strong {
            Some(reason) => self.tier(Tier::Strong, reason),
            None => self.tier(Tier::Fast, Reason::Default),
        }
    }

    fn requested(&self, requested: &str) -> Result<Route, NotAllowed> {
        if requested.eq_ignore_ascii_case("fast") {
            return Ok(self.tier(Tier::Fast, Reason::Requested));
        }
        if requested.eq_ignore_ascii_case("strong") {
            return Ok(self.tier(Tier::Strong, Reason::Requested));
        }
        if !self.allowed.iter().any(|name| name == requested) {
            return Err(NotAllowed {
                requested: requested.to_string(),
                allowed: self.choices(),
            });
        }
        let tier = if requested == self.fast {
            Tier::Fast
        } else if requested == self.strong {
            Tier::Strong
        } else {
            Tier::Named
        };
        Ok(Route {
            tier,
            model: requested.to_string(),
            reason: Reason::Requested,
        })
    }

    /// Where a call of a multi-agent run goes: `tier` with `MODEL_ROUTING=auto`
    /// (the planner and synthesis strong, the executors fast); with `off`,
    /// the one model, as for every other call.
    pub fn for_role(&self, tier: Tier, role: &'static str) -> Route {
        match self.mode {
            Mode::Auto => self.tier(tier, Reason::Role(role)),
            Mode::Off => self.tier(Tier::Fast, Reason::Default),
        }
    }

    fn tier(&self, tier: Tier, reason: Reason) -> Route {
        let model = match tier {
            Tier::Strong => self.strong.clone(),
            Tier::Fast | Tier::Named => self.fast.clone(),
        };
        Route { tier, model, reason }
    }

    /// What a request's `model` may be: the tiers, then the allowed names.
    pub fn choices(&self) -> Vec<String> {
        let mut choices = vec!["fast".to_string(), "strong".to_string()];
        for name in &self.allowed {
            if !choices.contains(name) {
                choices.push(name.clone());
            }
        }
        choices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(mode: Mode) -> Router {
        Router {
            mode,
            rules: Rules::default(),
            fast: "gemini-2.5-flash".to_string(),
            strong: "gemini-2.5-pro".to_string(),
            allowed: vec!["gemini-2.5-flash".to_string(), "gemini-2.5-pro".to_string()],
        }
    }

    #[test]
    fn the_rules_route_requests_in_four_languages() {
        let router = router(Mode::Auto);
        let long = "cuéntame algo sobre el mar. ".repeat(80);
        let cases: &[(&str, usize, Tier, &str)] = &[
            // English
            ("Analyze the sales of last quarter", 0, Tier::Strong, "keyword:analy*"),
            ("Explain how a rainbow forms", 0, Tier::Strong, "keyword:explain*"),
            ("compare Rust and Go for services", 0, Tier::Strong, "keyword:compar*"),
            ("Make a plan for the launch", 0, Tier::Strong, "keyword:plan"),
            ("What is the capital of France?", 0, Tier::Fast, "default"),
            ("Name a planet near the sun", 0, Tier::Fast, "default"),
            // Spanish
            ("Analiza las ventas del trimestre", 0, Tier::Strong, "keyword:analiz*"),
            (
                "Explícame cómo funciona la fotosíntesis",
                0,
                Tier::Strong,
                "keyword:explíc*",
            ),
            ("ANÁLISIS de riesgos del proyecto", 0, Tier::Strong, "keyword:anális*"),
            ("Planifica mis vacaciones", 0, Tier::Strong, "keyword:planific*"),
            ("¿Cuánto es 2 + 2?", 0, Tier::Fast, "default"),
            ("Hola, ¿qué tal?", 0, Tier::Fast, "default"),
            // Portuguese
            ("Analise os dados de vendas", 0, Tier::Strong, "keyword:analis*"),
            ("Compare os dois contratos", 0, Tier::Strong, "keyword:compar*"),
            ("Planeje uma viagem a Lisboa", 0, Tier::Strong, "keyword:planej*"),
            (
                "Explique a fotossíntese passo a passo",
                0,
                Tier::Strong,
                "keyword:expliq*",
            ),
            ("Qual é a capital do Brasil?", 0, Tier::Fast, "default"),
            ("Bom dia!", 0, Tier::Fast, "default"),
            // Chinese
            ("请分析一下这个季度的销售数据", 0, Tier::Strong, "keyword:分析"),
            ("解释一下光合作用", 0, Tier::Strong, "keyword:解释"),
            ("比较Rust和Go", 0, Tier::Strong, "keyword:比较"),
            ("帮我制定一个旅行计划", 0, Tier::Strong, "keyword:计划"),
            ("今天天气怎么样?", 0, Tier::Fast, "default"),
            ("二加二等于几", 0, Tier::Fast, "default"),
            // Length and tools
            (long.as_str(), 0, Tier::Strong, "length"),
            ("what time is it", DEFAULT_MIN_TOOLS, Tier::Strong, "tools"),
            ("what time is it", DEFAULT_MIN_TOOLS - 1, Tier::Fast, "default"),
        ];
        for (text, tools, tier, reason) in cases {
            let route = router.route(text, *tools, None).expect("a route");
            let label: String = text.chars().take(40).collect();
            assert_eq!(
                (route.tier, route.reason.to_string()),
                (*tier, reason.to_string()),
                "{label}"
            );
            let model = if *tier == Tier::Strong {
                "gemini-2.5-pro"
            } else {
                "gemini-2.5-flash"
            };
            assert_eq!(route.model, model, "{label}");
        }
    }

    #[test]
    fn off_routes_everything_to_the_fast_tier_unless_asked() {
        let router = router(Mode::Off);
        let route = router.route("Analyze everything", 10, None).expect("a route");
        assert_eq!((route.tier, route.reason), (Tier::Fast, Reason::Default));
        let route = router.route("hi", 0, Some("strong")).expect("a route");
        assert_eq!((route.tier, route.model.as_str()), (Tier::Strong, "gemini-2.5-pro"));
        assert_eq!(route.reason, Reason::Requested);
    }

    #[test]
    fn a_request_names_a_tier_or_an_allowed_model_only() {
        let mut router = router(Mode::Auto);
        router.allowed.push("gemini-2.0-flash".to_string());
        let route = router.route("Analyze it", 0, Some("FAST")).expect("a route");
        assert_eq!(
            (route.tier, route.reason.to_string()),
            (Tier::Fast, "requested".to_string())
        );
        let route = router.route("x", 0, Some("gemini-2.5-pro")).expect("a route");
        assert_eq!(route.tier, Tier::Strong);
        let route = router.route("x", 0, Some("gemini-2.0-flash")).expect("a route");
        assert_eq!((route.tier, route.model.as_str()), (Tier::Named, "gemini-2.0-flash"));
        let refused = router.route("x", 0, Some("gemini-ultra")).expect_err("not allowed");
        assert_eq!(
            refused.to_string(),
            "model \"gemini-ultra\" is not allowed here; use one of: fast, strong, gemini-2.5-flash, \
             gemini-2.5-pro, gemini-2.0-flash"
        );
    }

    #[test]
    fn keywords_are_configurable_and_match_whole_words_or_stems() {
        let rules = Rules::new(["Deep Dive", "review*", " ", "*"], 0, 0);
        assert_eq!(rules.keywords().collect::<Vec<_>>(), ["Deep Dive", "review*"]);
        assert_eq!(
            rules.strong_reason("Please do a deep dive.", 99),
            Some(Reason::Keyword("Deep Dive".to_string()))
        );
        assert_eq!(
            rules.strong_reason("reviewing", 0),
            Some(Reason::Keyword("review*".to_string()))
        );
        assert_eq!(rules.strong_reason("a deep diver; prereview", 99), None);
        assert_eq!(rules.strong_reason(&"x".repeat(10_000), 99), None);
    }
}
