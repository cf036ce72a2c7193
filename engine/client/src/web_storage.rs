//! The identity token in the browser's `localStorage` (browser builds): the value under
//! [`ClientConfig::token_key`](crate::ClientConfig::token_key) is the token as 64 hex digits, as in a token file.
//! `localStorage` belongs to the page's origin and outlives the page; a worker has none (connecting with a
//! `token_key` there fails with [`TokenStorageError::Unavailable`]).

use js_sys::Reflect;
use locus_protocol::Token;
use thiserror::Error;
use wasm_bindgen::{JsCast, JsValue};

use crate::ConnectError;
use crate::token_store::TokenStore;

/// Why the token cannot be read from or written to `localStorage`.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TokenStorageError {
    /// This context has no `localStorage` (a worker), or the browser refuses it (storage disabled).
    #[error("no localStorage here: {0}")]
    Unavailable(String),
    /// Reading or writing the key failed (e.g. the quota is exceeded).
    #[error("localStorage key {key:?}: {reason}")]
    Access {
        /// The key.
        key: String,
        /// What the browser said.
        reason: String,
    },
    /// The value under the key is not 64 hex digits.
    #[error("localStorage key {key:?} does not hold a token (64 hex digits)")]
    Malformed {
        /// The key.
        key: String,
    },
}

/// `localStorage` under a key.
pub(crate) struct LocalStorage(pub(crate) String);

fn js_text(value: &JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            value
                .dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .unwrap_or_else(|| format!("{value:?}"))
}

fn storage() -> Result<web_sys::Storage, TokenStorageError> {
    let value = Reflect::get(&js_sys::global(), &JsValue::from_str("localStorage"))
        .map_err(|e| TokenStorageError::Unavailable(js_text(&e)))?;
    if value.is_undefined() || value.is_null() {
        return Err(TokenStorageError::Unavailable(
            "this context has no localStorage".into(),
        ));
    }
    value
        .dyn_into::<web_sys::Storage>()
        .map_err(|_| TokenStorageError::Unavailable("localStorage is not a Storage".into()))
}

impl TokenStore for LocalStorage {
    fn load(&self) -> Result<Option<Token>, ConnectError> {
        let key = &self.0;
        let value = storage()?
            .get_item(key)
            .map_err(|e| TokenStorageError::Access {
                key: key.clone(),
                reason: js_text(&e),
            })?;
        match value {
            None => Ok(None),
            Some(text) => Token::from_hex(&text)
                .map(Some)
                .ok_or_else(|| TokenStorageError::Malformed { key: key.clone() }.into()),
        }
    }

    fn save(&self, token: &Token) -> Result<(), ConnectError> {
        let key = &self.0;
        storage()?
            .set_item(key, &token.to_hex())
            .map_err(|e| TokenStorageError::Access {
                key: key.clone(),
                reason: js_text(&e),
            })?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("localStorage[{:?}]", self.0)
    }
}
