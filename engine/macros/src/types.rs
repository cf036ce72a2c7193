//! The mapping from a field's or parameter's Rust type (as written) to a Locus column type.
//!
//! The mapping is syntactic: the macro sees tokens, not resolved types. It looks at the last path segment:
//!
//! | written | column type |
//! |---|---|
//! | `bool`, `i8`…`i64`, `u8`…`u64`, `f32`, `f64` | the same |
//! | `String` | `String` |
//! | `Vec<u8>` | `Bytes` (encoded as MessagePack `bin` through `serde_bytes`) |
//! | `Vec2`, `Identity`, `Timestamp` | the same (checked at compile time to be the SDK's types) |
//! | `Option<T>` | `Option(T)`, recursively |
//! | `usize`, `isize` | rejected: their width differs between wasm32 and native |
//! | anything else | `Opaque` (any serde type, stored as one MessagePack value) |

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericArgument, PathArguments, Type};

pub(crate) use locus_types::ColumnType;

/// What the macros need of a [`ColumnType`] beyond its own methods (`is_integer`, `is_indexable`).
pub(crate) trait ColumnTypeExt {
    /// Whether the value is bytes under zero or more options (and so needs `serde_bytes`).
    fn is_bytes_like(&self) -> bool;
    /// An expression of type `::locus_module::ColumnType`.
    fn tokens(&self) -> TokenStream;
}

impl ColumnTypeExt for ColumnType {
    fn is_bytes_like(&self) -> bool {
        match self {
            ColumnType::Bytes => true,
            ColumnType::Option(inner) => inner.is_bytes_like(),
            _ => false,
        }
    }

    fn tokens(&self) -> TokenStream {
        let variant = match self {
            ColumnType::Option(inner) => {
                let inner = inner.tokens();
                return quote!(::locus_module::ColumnType::Option(::std::boxed::Box::new(#inner)));
            }
            ColumnType::Bool => quote!(Bool),
            ColumnType::I8 => quote!(I8),
            ColumnType::I16 => quote!(I16),
            ColumnType::I32 => quote!(I32),
            ColumnType::I64 => quote!(I64),
            ColumnType::U8 => quote!(U8),
            ColumnType::U16 => quote!(U16),
            ColumnType::U32 => quote!(U32),
            ColumnType::U64 => quote!(U64),
            ColumnType::F32 => quote!(F32),
            ColumnType::F64 => quote!(F64),
            ColumnType::String => quote!(String),
            ColumnType::Bytes => quote!(Bytes),
            ColumnType::Vec2 => quote!(Vec2),
            ColumnType::Identity => quote!(Identity),
            ColumnType::Timestamp => quote!(Timestamp),
            ColumnType::Opaque => quote!(Opaque),
        };
        quote!(::locus_module::ColumnType::#variant)
    }
}

/// The result of mapping one type: the column type, plus compile-time checks to emit (that a type written
/// `Vec2`, `Identity` or `Timestamp` really is the SDK's type).
#[derive(Default)]
pub(crate) struct Checks(Vec<TokenStream>);

impl Checks {
    /// Statements (`const _: () = …;`) asserting every recorded type equality.
    pub(crate) fn into_tokens(self) -> TokenStream {
        let checks = self.0;
        quote!(#(#checks)*)
    }
}

/// The column type of `ty`; records the type checks it needs in `checks`.
pub(crate) fn column_type(ty: &Type, checks: &mut Checks) -> syn::Result<ColumnType> {
    match ty {
        Type::Paren(p) => column_type(&p.elem, checks),
        Type::Group(g) => column_type(&g.elem, checks),
        Type::Path(p) if p.qself.is_none() => {
            let Some(last) = p.path.segments.last() else {
                return Ok(ColumnType::Opaque);
            };
            let name = last.ident.to_string();
            let single_arg = || match &last.arguments {
                PathArguments::AngleBracketed(a) if a.args.len() == 1 => match &a.args[0] {
                    GenericArgument::Type(t) => Some(t),
                    _ => None,
                },
                _ => None,
            };
            if !matches!(last.arguments, PathArguments::None) {
                return Ok(match name.as_str() {
                    "Option" => match single_arg() {
                        Some(inner) => ColumnType::Option(Box::new(column_type(inner, checks)?)),
                        None => ColumnType::Opaque,
                    },
                    "Vec" => match single_arg() {
                        Some(Type::Path(inner))
                            if inner.qself.is_none() && inner.path.is_ident("u8") =>
                        {
                            ColumnType::Bytes
                        }
                        _ => ColumnType::Opaque,
                    },
                    _ => ColumnType::Opaque,
                });
            }
            let checked = |expected: TokenStream, checks: &mut Checks, col: ColumnType| {
                checks.0.push(quote_spanned! {ty.span()=>
                    const _: () = ::locus_module::__private::assert_same_type::<#ty, #expected>();
                });
                col
            };
            Ok(match name.as_str() {
                "bool" => ColumnType::Bool,
                "i8" => ColumnType::I8,
                "i16" => ColumnType::I16,
                "i32" => ColumnType::I32,
                "i64" => ColumnType::I64,
                "u8" => ColumnType::U8,
                "u16" => ColumnType::U16,
                "u32" => ColumnType::U32,
                "u64" => ColumnType::U64,
                "f32" => ColumnType::F32,
                "f64" => ColumnType::F64,
                "String" => ColumnType::String,
                "usize" | "isize" => {
                    return Err(syn::Error::new_spanned(
                        ty,
                        format!(
                            "`{name}` cannot be a column or parameter type: its width differs between wasm32 and \
                             native builds; use `{}32` or `{}64`",
                            &name[..1],
                            &name[..1]
                        ),
                    ));
                }
                "Vec2" => checked(quote!(::locus_module::Vec2), checks, ColumnType::Vec2),
                "Identity" => checked(
                    quote!(::locus_module::Identity),
                    checks,
                    ColumnType::Identity,
                ),
                "Timestamp" => checked(
                    quote!(::locus_module::Timestamp),
                    checks,
                    ColumnType::Timestamp,
                ),
                _ => ColumnType::Opaque,
            })
        }
        _ => Ok(ColumnType::Opaque),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(src: &str) -> syn::Result<ColumnType> {
        let ty: Type = syn::parse_str(src).unwrap();
        column_type(&ty, &mut Checks::default())
    }

    #[test]
    fn primitives_and_strings() {
        assert_eq!(map("bool").unwrap(), ColumnType::Bool);
        assert_eq!(map("i8").unwrap(), ColumnType::I8);
        assert_eq!(map("i16").unwrap(), ColumnType::I16);
        assert_eq!(map("i32").unwrap(), ColumnType::I32);
        assert_eq!(map("i64").unwrap(), ColumnType::I64);
        assert_eq!(map("u8").unwrap(), ColumnType::U8);
        assert_eq!(map("u16").unwrap(), ColumnType::U16);
        assert_eq!(map("u32").unwrap(), ColumnType::U32);
        assert_eq!(map("u64").unwrap(), ColumnType::U64);
        assert_eq!(map("f32").unwrap(), ColumnType::F32);
        assert_eq!(map("f64").unwrap(), ColumnType::F64);
        assert_eq!(map("String").unwrap(), ColumnType::String);
        assert_eq!(map("std::string::String").unwrap(), ColumnType::String);
    }

    #[test]
    fn bytes_options_and_sdk_types() {
        assert_eq!(map("Vec<u8>").unwrap(), ColumnType::Bytes);
        assert_eq!(map("std::vec::Vec<u8>").unwrap(), ColumnType::Bytes);
        assert_eq!(map("Vec<u16>").unwrap(), ColumnType::Opaque);
        assert_eq!(
            map("Option<i32>").unwrap(),
            ColumnType::Option(Box::new(ColumnType::I32))
        );
        assert_eq!(
            map("Option<Option<Vec<u8>>>").unwrap(),
            ColumnType::Option(Box::new(ColumnType::Option(Box::new(ColumnType::Bytes))))
        );
        assert!(map("Option<Vec<u8>>").unwrap().is_bytes_like());
        let mut checks = Checks::default();
        let ty: Type = syn::parse_str("Option<locus_module::Vec2>").unwrap();
        assert_eq!(
            column_type(&ty, &mut checks).unwrap(),
            ColumnType::Option(Box::new(ColumnType::Vec2))
        );
        assert_eq!(checks.0.len(), 1, "a Vec2 is checked to be the SDK's");
        assert_eq!(map("Identity").unwrap(), ColumnType::Identity);
        assert_eq!(map("Timestamp").unwrap(), ColumnType::Timestamp);
    }

    #[test]
    fn everything_else_is_opaque_and_usize_is_rejected() {
        for src in [
            "MyEnum",
            "Vec<String>",
            "(u32, u32)",
            "[u8; 32]",
            "HashMap<u32, u32>",
            "i128",
        ] {
            assert_eq!(map(src).unwrap(), ColumnType::Opaque, "{src}");
        }
        let err = map("usize").unwrap_err().to_string();
        assert!(err.contains("use `u32` or `u64`"), "{err}");
        let err = map("Option<isize>").unwrap_err().to_string();
        assert!(err.contains("use `i32` or `i64`"), "{err}");
    }

    #[test]
    fn tokens_name_the_sdk_column_type() {
        let t = ColumnType::Option(Box::new(ColumnType::U8))
            .tokens()
            .to_string();
        assert_eq!(
            t.replace(' ', ""),
            "::locus_module::ColumnType::Option(::std::boxed::Box::new(::locus_module::ColumnType::U8))"
        );
    }
}
