//! Arbitrary text never panics the scanners that read what clients and
//! models send: the calculator, the offline model's task planner, search
//! (query and corpus), session ids and JSON bodies. Inputs come from a
//! seeded generator mixing operators, digits, keywords of the grammars and
//! multibyte characters, so a byte index that lands inside a character (the
//! classic slicing panic) is found, and a failure reproduces exactly.

use std::sync::Arc;

use agent_core::llm::offline::OfflineModel;
use agent_core::llm::{Content, Model, ModelRequest};
use agent_core::tools::search::{Document, SearchIndex};
use agent_core::tools::{Registry, Tool, calculator};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "1",
    "23",
    "4.5",
    ".5",
    "1e3",
    "2E-",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "**",
    "(",
    ")",
    ",",
    " ",
    "  ",
    "sqrt(",
    "log(",
    "min(",
    "pi",
    "e",
    "×",
    "÷",
    "−",
    "π",
    "é",
    "ñ",
    "ü",
    "𝔸",
    "🦀",
    "中文",
    "?",
    "¿",
    "!",
    ".",
    ";",
    ":",
    "=",
    "\n",
    "#",
    "## ",
    "`",
    "```",
    "|",
    "remember that ",
    " is ",
    "recuerda que ",
    " es ",
    "what do you remember",
    "qué recuerdas",
    "search for ",
    "busca información sobre ",
    " and ",
    " y ",
    "calcula ",
    "what is ",
    "my ",
    "colour",
    "matemáticas",
    "\"",
    "'",
    "\\",
    "\u{301}",
    "\u{200b}",
    "ß",
    "İ",
    "ﬁ",
];

fn arbitrary(rng: &mut Rng) -> String {
    let n = rng.below(24);
    (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
}

#[tokio::test]
async fn arbitrary_text_never_panics() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let offline = OfflineModel::new();
    let index = Arc::new(SearchIndex::from_documents(vec![
        Document {
            source: "a.md".into(),
            text: "# Título\n\n## Sección ñ\n\nLas matemáticas 15 * 23 🦀 y más.".into(),
        },
        Document {
            source: "b.txt".into(),
            text: "plain text é about colour and search".into(),
        },
    ]));
    let calculator = calculator::Calculator::new();
    let registry = Registry::new()
        .with(Arc::new(calculator::Calculator::new()))
        .with(Arc::new(agent_core::tools::search::Search::new(index.clone())));

    for _ in 0..5_000 {
        let text = arbitrary(&mut rng);
        let _ = calculator::evaluate(&text);
        let _ = index.search(&text, 5);
        let _ = agent_core::session::validate("session_id", &text);
        let _ = agent_core::http::json::parse::<serde_json::Value>(text.as_bytes());
        let _ = calculator
            .call(serde_json::json!({ "expression": text }), &Default::default())
            .await;

        // The offline model plans calls from the text, and answers from
        // results that echo it.
        let request = ModelRequest {
            response_schema: None,
            system_instruction: None,
            contents: vec![Content::user_text(text.clone())],
            tools: registry.specs(),
        };
        let planned = offline.generate(&request).await.expect("the offline model never fails");
        let _ = SearchIndex::from_documents(vec![Document {
            source: "x.md".into(),
            text: text.clone(),
        }])
        .search(&text, 3);
        if planned.content.function_calls().next().is_some() {
            let mut next = request.clone();
            next.contents.push(planned.content.clone());
            let responses = planned
                .content
                .function_calls()
                .map(|c| {
                    agent_core::llm::Part::FunctionResponse(agent_core::llm::FunctionResponse {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        response: serde_json::json!({"error": text, "expression": text, "query": text, "results": [{"title": text, "snippet": text}]}),
                    })
                })
                .collect();
            next.contents.push(Content {
                role: Some(agent_core::llm::Role::User),
                parts: responses,
                raw: None,
            });
            offline.generate(&next).await.expect("the offline model never fails");
        }
    }
}
