//! JSON bodies for the answers hyper gives on its own (a request it cannot parse): the listener
//! wrapper lives in `model::parse_errors`, shared with the agent's Docker plugin socket; this
//! is netmaster's use of it, with the API's `{"error": "..."}` bodies.

pub use model::parse_errors::Conn;

/// netmaster's listener wrapper (the type).
pub type JsonParseErrors<L> = model::parse_errors::JsonParseErrors<L>;

/// Wraps `listener` so that hyper's bare 400/414/431 answers get the API's `{"error": "..."}`
/// body. Named like the type, as a tuple struct's constructor is: `JsonParseErrors(listener)`.
#[allow(non_snake_case)]
pub fn JsonParseErrors<L>(listener: L) -> JsonParseErrors<L> {
    model::parse_errors::JsonParseErrors::new(listener, model::parse_errors::Shape::Error)
}
