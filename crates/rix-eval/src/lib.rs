//! rix's Nix language evaluator.
//!
//! Source text is parsed by `rnix`, lowered into a compact AST with variables
//! resolved to environment slots ([`lower`]), and evaluated lazily by a
//! tree-walking interpreter with memoised thunks ([`eval`]). Values print as
//! `nix-instantiate --eval` prints them ([`print`]), or as JSON and XML.
//!
//! | module | what |
//! | --- | --- |
//! | [`symbol`] | interned identifiers |
//! | [`source`] | source positions and their files |
//! | [`ast`] / [`lower`] | the expression tree and its construction from rnix's CST |
//! | [`value`] | values, attribute sets, thunks, environments |
//! | [`eval`] | the interpreter |
//! | [`ops`] | arithmetic |
//! | [`builtins`] | the builtins and the base environment |
//! | [`print`] | value printing |
//! | [`show`] | expressions printed as `nix-instantiate --parse` does |
//! | [`store`] | what evaluation needs from a store, and a dry-run store |
//! | [`api`] | the embedding API: [`Evaluator`] plus file/attribute-path helpers |

pub mod api;
pub mod ast;
pub mod builtins;
pub mod error;
pub mod eval;
pub mod lower;
pub mod ops;
pub mod print;
pub mod show;
pub mod source;
pub mod store;
pub mod symbol;
pub mod value;

pub use api::{AutoArg, DrvInfo};
pub use error::{ErrorKind, EvalError, Result};
pub use eval::{EvalOptions, Evaluator, ExtraPrimOp, SearchPathEntry};
pub use store::{DryRunStore, EvalStore};
pub use value::Value;
