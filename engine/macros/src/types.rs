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

/// A column type, as the macro derives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ColType {
    Bool,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
    String,
    Bytes,
    Vec2,
    Identity,
    Timestamp,
    Opaque,
    Option(Box<ColType>),
}

impl ColType {
    /// Whether the type is an integer (what `auto_inc` needs).
    pub(crate) fn is_integer(&self) -> bool {
        matches!(
            self,
            ColType::I8
                | ColType::I16
                | ColType::I32
                | ColType::I64
                | ColType::U8
                | ColType::U16
                | ColType::U32
                | ColType::U64
        )
    }

    /// Whether the type can be an index key (everything but `Opaque`, also inside options).
    pub(crate) fn is_indexable(&self) -> bool {
        match self {
            ColType::Opaque => false,
            ColType::Option(inner) => inner.is_indexable(),
            _ => true,
        }
    }

    /// Whether the value is bytes under zero or more options (and so needs `serde_bytes`).
    pub(crate) fn is_bytes_like(&self) -> bool {
        match self {
            ColType::Bytes => true,
            ColType::Option(inner) => inner.is_bytes_like(),
            _ => false,
        }
    }

    /// An expression of type `::locus_module::ColumnType`.
    pub(crate) fn tokens(&self) -> TokenStream {
        let variant = match self {
            ColType::Option(inner) => {
                let inner = inner.tokens();
                return quote!(::locus_module::ColumnType::Option(::std::boxed::Box::new(#inner)));
            }
            ColType::Bool => quote!(Bool),
            ColType::I8 => quote!(I8),
            ColType::I16 => quote!(I16),
            ColType::I32 => quote!(I32),
            ColType::I64 => quote!(I64),
            ColType::U8 => quote!(U8),
            ColType::U16 => quote!(U16),
            ColType::U32 => quote!(U32),
            ColType::U64 => quote!(U64),
            ColType::F32 => quote!(F32),
            ColType::F64 => quote!(F64),
            ColType::String => quote!(String),
            ColType::Bytes => quote!(Bytes),
            ColType::Vec2 => quote!(Vec2),
            ColType::Identity => quote!(Identity),
            ColType::Timestamp => quote!(Timestamp),
            ColType::Opaque => quote!(Opaque),
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
pub(crate) fn column_type(ty: &Type, checks: &mut Checks) -> syn::Result<ColType> {
    match ty {
        Type::Paren(p) => column_type(&p.elem, checks),
        Type::Group(g) => column_type(&g.elem, checks),
        Type::Path(p) if p.qself.is_none() => {
            let Some(last) = p.path.segments.last() else {
                return Ok(ColType::Opaque);
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
                        Some(inner) => ColType::Option(Box::new(column_type(inner, checks)?)),
                        None => ColType::Opaque,
                    },
                    "Vec" => match single_arg() {
                        Some(Type::Path(inner))
                            if inner.qself.is_none() && inner.path.is_ident("u8") =>
                        {
                            ColType::Bytes
                        }
                        _ => ColType::Opaque,
                    },
                    _ => ColType::Opaque,
                });
            }
            let checked = |expected: TokenStream, checks: &mut Checks, col: ColType| {
                checks.0.push(quote_spanned! {ty.span()=>
                    const _: () = ::locus_module::__private::assert_same_type::<#ty, #expected>();
                });
                col
            };
            Ok(match name.as_str() {
                "bool" => ColType::Bool,
                "i8" => ColType::I8,
                "i16" => ColType::I16,
                "i32" => ColType::I32,
                "i64" => ColType::I64,
                "u8" => ColType::U8,
                "u16" => ColType::U16,
                "u32" => ColType::U32,
                "u64" => ColType::U64,
                "f32" => ColType::F32,
                "f64" => ColType::F64,
                "String" => ColType::String,
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
                "Vec2" => checked(quote!(::locus_module::Vec2), checks, ColType::Vec2),
                "Identity" => checked(quote!(::locus_module::Identity), checks, ColType::Identity),
                "Timestamp" => checked(
                    quote!(::locus_module::Timestamp),
                    checks,
                    ColType::Timestamp,
                ),
                _ => ColType::Opaque,
            })
        }
        _ => Ok(ColType::Opaque),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(src: &str) -> syn::Result<ColType> {
        let ty: Type = syn::parse_str(src).unwrap();
        column_type(&ty, &mut Checks::default())
    }

    #[test]
    fn primitives_and_strings() {
        assert_eq!(map("bool").unwrap(), ColType::Bool);
        assert_eq!(map("i8").unwrap(), ColType::I8);
        assert_eq!(map("i16").unwrap(), ColType::I16);
        assert_eq!(map("i32").unwrap(), ColType::I32);
        assert_eq!(map("i64").unwrap(), ColType::I64);
        assert_eq!(map("u8").unwrap(), ColType::U8);
        assert_eq!(map("u16").unwrap(), ColType::U16);
        assert_eq!(map("u32").unwrap(), ColType::U32);
        assert_eq!(map("u64").unwrap(), ColType::U64);
        assert_eq!(map("f32").unwrap(), ColType::F32);
        assert_eq!(map("f64").unwrap(), ColType::F64);
        assert_eq!(map("String").unwrap(), ColType::String);
        assert_eq!(map("std::string::String").unwrap(), ColType::String);
    }

    #[test]
    fn bytes_options_and_sdk_types() {
        assert_eq!(map("Vec<u8>").unwrap(), ColType::Bytes);
        assert_eq!(map("std::vec::Vec<u8>").unwrap(), ColType::Bytes);
        assert_eq!(map("Vec<u16>").unwrap(), ColType::Opaque);
        assert_eq!(
            map("Option<i32>").unwrap(),
            ColType::Option(Box::new(ColType::I32))
        );
        assert_eq!(
            map("Option<Option<Vec<u8>>>").unwrap(),
            ColType::Option(Box::new(ColType::Option(Box::new(ColType::Bytes))))
        );
        assert!(map("Option<Vec<u8>>").unwrap().is_bytes_like());
        let mut checks = Checks::default();
        let ty: Type = syn::parse_str("Option<locus_module::Vec2>").unwrap();
        assert_eq!(
            column_type(&ty, &mut checks).unwrap(),
            ColType::Option(Box::new(ColType::Vec2))
        );
        assert_eq!(checks.0.len(), 1, "a Vec2 is checked to be the SDK's");
        assert_eq!(map("Identity").unwrap(), ColType::Identity);
        assert_eq!(map("Timestamp").unwrap(), ColType::Timestamp);
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
            assert_eq!(map(src).unwrap(), ColType::Opaque, "{src}");
        }
        let err = map("usize").unwrap_err().to_string();
        assert!(err.contains("use `u32` or `u64`"), "{err}");
        let err = map("Option<isize>").unwrap_err().to_string();
        assert!(err.contains("use `i32` or `i64`"), "{err}");
    }

    #[test]
    fn indexability() {
        assert!(ColType::U64.is_indexable());
        assert!(ColType::Option(Box::new(ColType::String)).is_indexable());
        assert!(!ColType::Opaque.is_indexable());
        assert!(!ColType::Option(Box::new(ColType::Opaque)).is_indexable());
        assert!(ColType::I8.is_integer() && !ColType::F32.is_integer());
    }

    #[test]
    fn tokens_name_the_sdk_column_type() {
        let t = ColType::Option(Box::new(ColType::U8)).tokens().to_string();
        assert_eq!(
            t.replace(' ', ""),
            "::locus_module::ColumnType::Option(::std::boxed::Box::new(::locus_module::ColumnType::U8))"
        );
    }
}
