//! `#[reducer]`: a function becomes a reducer entry point, plus a module of typed calls.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, LitInt, Pat, ReturnType, Type};

use crate::types::{Checks, ColumnType, ColumnTypeExt, column_type};
use crate::{RESERVED_PREFIX, ident_name};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Client,
    Init,
    ClientConnected,
    ClientDisconnected,
    Tick,
    Every(u64),
    Scheduled,
    Upgrade,
    Region,
}

impl Kind {
    fn tokens(&self) -> TokenStream {
        match self {
            Kind::Client => quote!(::locus_module::ReducerKind::Client),
            Kind::Init => quote!(::locus_module::ReducerKind::Init),
            Kind::ClientConnected => quote!(::locus_module::ReducerKind::ClientConnected),
            Kind::ClientDisconnected => quote!(::locus_module::ReducerKind::ClientDisconnected),
            Kind::Tick => quote!(::locus_module::ReducerKind::Tick),
            Kind::Every(millis) => quote!(::locus_module::ReducerKind::Every { millis: #millis }),
            Kind::Scheduled => quote!(::locus_module::ReducerKind::Scheduled),
            Kind::Upgrade => quote!(::locus_module::ReducerKind::Upgrade),
            Kind::Region => quote!(::locus_module::ReducerKind::Region),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Kind::Client => "client",
            Kind::Init => "init",
            Kind::ClientConnected => "client_connected",
            Kind::ClientDisconnected => "client_disconnected",
            Kind::Tick => "tick",
            Kind::Every(_) => "every_ms",
            Kind::Scheduled => "scheduled",
            Kind::Upgrade => "upgrade",
            Kind::Region => "region",
        }
    }
}

struct Param {
    ident: Ident,
    name: String,
    ty: Type,
    col: ColumnType,
}

fn parse_kind(attr: TokenStream) -> syn::Result<Kind> {
    let mut kind: Option<(Kind, Span)> = None;
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        let k = if meta.path.is_ident("client") {
            Kind::Client
        } else if meta.path.is_ident("init") {
            Kind::Init
        } else if meta.path.is_ident("client_connected") {
            Kind::ClientConnected
        } else if meta.path.is_ident("client_disconnected") {
            Kind::ClientDisconnected
        } else if meta.path.is_ident("tick") {
            Kind::Tick
        } else if meta.path.is_ident("scheduled") {
            Kind::Scheduled
        } else if meta.path.is_ident("upgrade") {
            Kind::Upgrade
        } else if meta.path.is_ident("region") {
            Kind::Region
        } else if meta.path.is_ident("every_ms") {
            let lit: LitInt = meta.value()?.parse()?;
            let millis: u64 = lit.base10_parse()?;
            if millis == 0 {
                return Err(syn::Error::new_spanned(
                    lit,
                    "`every_ms` must be at least 1",
                ));
            }
            Kind::Every(millis)
        } else {
            return Err(meta.error(
                "unknown reducer kind; expected `init`, `client_connected`, `client_disconnected`, `tick`, \
                 `every_ms = N`, `scheduled`, `upgrade`, `region` or nothing (a client reducer)",
            ));
        };
        if kind.is_some() {
            return Err(syn::Error::new(span, "a reducer has exactly one kind"));
        }
        kind = Some((k, span));
        Ok(())
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(kind.map_or(Kind::Client, |(k, _)| k))
}

/// Expand `#[reducer(attr)] item`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let kind = parse_kind(attr)?;
    let func: ItemFn = syn::parse2(item)
        .map_err(|e| syn::Error::new(e.span(), "#[reducer] can only be used on a function"))?;
    let sig = &func.sig;
    if let Some(a) = &sig.asyncness {
        return Err(syn::Error::new_spanned(a, "a reducer cannot be async"));
    }
    if let Some(u) = &sig.unsafety {
        return Err(syn::Error::new_spanned(u, "a reducer cannot be unsafe"));
    }
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new_spanned(c, "a reducer cannot be const"));
    }
    if let Some(a) = &sig.abi {
        return Err(syn::Error::new_spanned(
            a,
            "a reducer cannot declare an ABI",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "a reducer cannot be generic",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new_spanned(v, "a reducer cannot be variadic"));
    }
    let fn_ident = &sig.ident;
    let name = ident_name(fn_ident);
    if name.starts_with(RESERVED_PREFIX) {
        return Err(syn::Error::new_spanned(
            fn_ident,
            format!("reducer names starting with `{RESERVED_PREFIX}` are reserved for the engine"),
        ));
    }

    let mut inputs = sig.inputs.iter();
    let ctx_error = || {
        syn::Error::new_spanned(
            &sig.inputs,
            "a reducer's first parameter must be the context: `ctx: &ReducerContext`",
        )
    };
    match inputs.next() {
        Some(FnArg::Typed(t)) if matches!(&*t.ty, Type::Reference(r) if r.mutability.is_none()) => {
        }
        Some(FnArg::Receiver(r)) => {
            return Err(syn::Error::new_spanned(
                r,
                "a reducer is a free function; its first parameter must be `ctx: &ReducerContext`",
            ));
        }
        Some(FnArg::Typed(t)) => {
            return Err(syn::Error::new_spanned(
                &t.ty,
                "a reducer's first parameter must be the context by shared reference: `ctx: &ReducerContext`",
            ));
        }
        None => return Err(ctx_error()),
    }

    let mut checks = Checks::default();
    let mut params = Vec::new();
    let mut errors: Option<syn::Error> = None;
    let mut push_err = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    for arg in inputs {
        let FnArg::Typed(t) = arg else {
            push_err(syn::Error::new_spanned(arg, "unexpected receiver"));
            continue;
        };
        let ident = match &*t.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
            other => {
                push_err(syn::Error::new_spanned(
                    other,
                    "reducer parameters must be plain names (`name: Type`): the names are part of the reducer's \
                     description",
                ));
                continue;
            }
        };
        if let Type::Reference(_) = &*t.ty {
            push_err(syn::Error::new_spanned(
                &t.ty,
                "reducer parameters must be owned (decoded from the call's arguments); use `String` for `&str` \
                 and `Vec<T>` for `&[T]`",
            ));
            continue;
        }
        match column_type(&t.ty, &mut checks) {
            Ok(col) => params.push(Param {
                name: ident_name(&ident),
                ident,
                ty: (*t.ty).clone(),
                col,
            }),
            Err(e) => push_err(e),
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }

    match kind {
        Kind::Init | Kind::ClientConnected | Kind::ClientDisconnected | Kind::Every(_)
            if !params.is_empty() =>
        {
            return Err(syn::Error::new_spanned(
                &params[0].ident,
                format!(
                    "a `{}` reducer takes only the context: `fn {name}(ctx: &ReducerContext)`",
                    kind.describe()
                ),
            ));
        }
        Kind::Upgrade if params.len() != 2 || params.iter().any(|p| p.col != ColumnType::U32) => {
            return Err(syn::Error::new_spanned(
                &sig.inputs,
                format!(
                    "an `upgrade` reducer takes the context and two versions, the data's and the module's: \
                     `fn {name}(ctx: &ReducerContext, from: u32, to: u32)`"
                ),
            ));
        }
        Kind::Tick if params.len() != 1 || params[0].col != ColumnType::F32 => {
            return Err(syn::Error::new_spanned(
                &sig.inputs,
                format!(
                    "a `tick` reducer takes the context and the tick length: `fn {name}(ctx: &ReducerContext, dt: f32)`"
                ),
            ));
        }
        _ => {}
    }

    Ok(generate(&func, &name, &kind, &params, checks))
}

fn generate(
    func: &ItemFn,
    name: &str,
    kind: &Kind,
    params: &[Param],
    checks: Checks,
) -> TokenStream {
    let fn_ident = &func.sig.ident;
    let attrs = &func.attrs;
    let vis = &func.vis;
    let sig = &func.sig;
    let block = &func.block;
    let checks = checks.into_tokens();
    let serde_path = quote!(::locus_module::__private::serde);
    let serde_crate = "::locus_module::__private::serde";
    let param_idents: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
    let param_tys: Vec<&Type> = params.iter().map(|p| &p.ty).collect();
    let param_count = params.len();
    let arg_fields = params.iter().map(|p| {
        let ident = &p.ident;
        let ty = &p.ty;
        let with = p
            .col
            .is_bytes_like()
            .then(|| quote!(#[serde(with = "::locus_module::__private::serde_bytes")]));
        quote!(#with pub #ident: #ty)
    });
    let param_defs = params.iter().map(|p| {
        let n = &p.name;
        let ty = p.col.tokens();
        quote!(::locus_module::ColumnDef::new(#n, #ty))
    });
    let kind_tokens = kind.tokens();
    let reducer_export = format_ident!("__locus_reducer_{}", name);
    let describe_export = format_ident!("__locus_describe_reducer_{}", name);
    let result_span = match &sig.output {
        ReturnType::Default => fn_ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let invoke_body = quote_spanned! {result_span=>
        ::locus_module::__private::into_reducer_result(super::#fn_ident(ctx, #(args.#param_idents),*))
    };
    let mod_doc = format!(
        "Reducer `{name}` ({}): its name, typed calls and description.",
        kind.describe()
    );
    // A scheduled reducer's call is a `ScheduledCall`, the only thing `schedule_at` takes, and a region reducer's a
    // `RegionCall`, for `send_to_region` / `send_to_all_regions` (which also take a client reducer's); every other
    // kind's is a plain `ReducerCall` (for a client to send), so scheduling one does not compile.
    let (call_ty, call_fn, call_doc) = if *kind == Kind::Scheduled {
        (
            quote!(::locus_module::ScheduledCall),
            quote!(::locus_module::__private::scheduled_call),
            format!(
                "A call of the scheduled reducer `{name}` with these arguments, to schedule with \
                 `ReducerContext::schedule_at` or `schedule_in`."
            ),
        )
    } else if *kind == Kind::Region {
        (
            quote!(::locus_module::RegionCall),
            quote!(::locus_module::__private::region_call),
            format!(
                "A call of the region reducer `{name}` with these arguments, to send to a region of the world \
                 with `ReducerContext::send_to_region` or to every region with `send_to_all_regions`."
            ),
        )
    } else {
        (
            quote!(::locus_module::ReducerCall),
            quote!(::locus_module::__private::reducer_call),
            format!(
                "A call of `{name}` with these arguments, for a client to send (it cannot be scheduled: only \
                 `#[reducer(scheduled)]` reducers can)."
            ),
        )
    };
    let def_doc = format!("The description of `{name}` the module reports to the host.");

    quote! {
        #(#attrs)*
        #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
        #vis #sig #block

        #[doc = #mod_doc]
        #[allow(dead_code)]
        pub mod #fn_ident {
            #[allow(unused_imports)]
            use super::*;

            #checks

            /// The reducer's name.
            pub const NAME: &str = #name;

            /// The reducer's parameters, in order: its arguments are this struct, encoded as one MessagePack
            /// array.
            #[doc(hidden)]
            #[allow(non_camel_case_types)]
            #[derive(#serde_path::Serialize, #serde_path::Deserialize)]
            #[serde(crate = #serde_crate)]
            pub struct __LocusArgs {
                #(#arg_fields,)*
            }

            #[doc = #call_doc]
            #[must_use]
            pub fn call(#(#param_idents: #param_tys),*) -> #call_ty {
                #call_fn(NAME, &__LocusArgs { #(#param_idents),* })
            }

            #[doc = #def_doc]
            #[must_use]
            pub fn def() -> ::locus_module::ReducerDef {
                ::locus_module::ReducerDef {
                    name: ::std::string::String::from(NAME),
                    kind: #kind_tokens,
                    params: ::std::vec![#(#param_defs),*],
                }
            }

            /// Run the reducer with decoded arguments.
            #[doc(hidden)]
            #[allow(unused_variables)]
            pub fn __invoke(
                ctx: &::locus_module::ReducerContext,
                args: __LocusArgs,
            ) -> ::std::result::Result<(), ::std::string::String> {
                #invoke_body
            }

            ::locus_module::__guest! {
                /// The reducer's entry point.
                #[doc(hidden)]
                #[allow(unsafe_code)]
                #[unsafe(no_mangle)]
                extern "C" fn #reducer_export(args_len: u32) -> u32 {
                    ::locus_module::__private::run_reducer::<__LocusArgs>(NAME, #param_count, args_len, __invoke)
                }

                /// The reducer's description.
                #[doc(hidden)]
                #[allow(unsafe_code)]
                #[unsafe(no_mangle)]
                extern "C" fn #describe_export() -> u64 {
                    ::locus_module::__private::describe_reducer(&def())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(attr: &str, item: &str) -> String {
        match expand(attr.parse().unwrap(), item.parse().unwrap()) {
            Ok(_) => panic!("expected an error for {item}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(parse_kind(TokenStream::new()).unwrap(), Kind::Client);
        assert_eq!(parse_kind("init".parse().unwrap()).unwrap(), Kind::Init);
        assert_eq!(
            parse_kind("every_ms = 500".parse().unwrap()).unwrap(),
            Kind::Every(500)
        );
        assert!(parse_kind("every_ms = 0".parse().unwrap()).is_err());
        assert!(parse_kind("init, tick".parse().unwrap()).is_err());
        assert!(parse_kind("hourly".parse().unwrap()).is_err());
    }

    #[test]
    fn a_client_reducer_expands() {
        let out = expand(
            TokenStream::new(),
            "fn say(ctx: &ReducerContext, text: String, data: Vec<u8>) -> Result<(), String> { Ok(()) }"
                .parse()
                .unwrap(),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("pub mod say"));
        assert!(out.contains("__locus_reducer_say"));
        assert!(out.contains("__locus_describe_reducer_say"));
        assert!(out.contains("serde_bytes"));
    }

    #[test]
    fn only_a_scheduled_reducers_call_is_a_scheduled_call() {
        let expand_kind = |attr: &str| {
            expand(
                attr.parse().unwrap(),
                "fn r(ctx: &ReducerContext, n: u32) {}".parse().unwrap(),
            )
            .unwrap()
            .to_string()
        };
        let scheduled = expand_kind("scheduled");
        assert!(
            scheduled.contains("-> :: locus_module :: ScheduledCall"),
            "{scheduled}"
        );
        for kind in ["", "client"] {
            let out = expand_kind(kind);
            assert!(out.contains("-> :: locus_module :: ReducerCall"), "{out}");
            assert!(!out.contains("ScheduledCall"), "{out}");
            assert!(!out.contains("RegionCall"), "{out}");
        }
    }

    #[test]
    fn a_region_reducers_call_is_a_region_call() {
        let out = expand(
            "region".parse().unwrap(),
            "fn deliver(ctx: &ReducerContext, text: String, n: Option<u64>) {}"
                .parse()
                .unwrap(),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("-> :: locus_module :: RegionCall"), "{out}");
        assert!(
            out.contains(":: locus_module :: ReducerKind :: Region"),
            "{out}"
        );
        assert!(!out.contains("ScheduledCall"), "{out}");
        assert_eq!(parse_kind("region".parse().unwrap()).unwrap(), Kind::Region);
        assert!(parse_kind("region, scheduled".parse().unwrap()).is_err());
    }

    #[test]
    fn signature_errors() {
        assert!(error_of("", "fn r() {}").contains("first parameter must be the context"));
        assert!(error_of("", "fn r(ctx: ReducerContext) {}").contains("by shared reference"));
        assert!(error_of("", "async fn r(ctx: &ReducerContext) {}").contains("async"));
        assert!(error_of("", "fn r<T>(ctx: &ReducerContext, t: T) {}").contains("generic"));
        assert!(error_of("", "fn r(ctx: &ReducerContext, s: &str) {}").contains("must be owned"));
        assert!(
            error_of("", "fn r(ctx: &ReducerContext, (a, b): (u32, u32)) {}")
                .contains("plain names")
        );
        assert!(error_of("", "fn r(ctx: &ReducerContext, n: usize) {}").contains("width differs"));
        assert!(error_of("", "fn locus_r(ctx: &ReducerContext) {}").contains("reserved"));
        assert!(error_of("", "struct S;").contains("only be used on a function"));
    }

    #[test]
    fn kind_parameter_rules() {
        assert!(
            error_of("init", "fn r(ctx: &ReducerContext, x: u32) {}")
                .contains("takes only the context")
        );
        assert!(
            error_of("every_ms = 5", "fn r(ctx: &ReducerContext, x: u32) {}")
                .contains("takes only the context")
        );
        assert!(error_of("tick", "fn r(ctx: &ReducerContext) {}").contains("dt: f32"));
        assert!(
            error_of("upgrade", "fn r(ctx: &ReducerContext, from: u32) {}")
                .contains("from: u32, to: u32")
        );
        assert!(
            error_of(
                "upgrade",
                "fn r(ctx: &ReducerContext, from: u64, to: u64) {}"
            )
            .contains("from: u32, to: u32")
        );
        assert_eq!(
            parse_kind("upgrade".parse().unwrap()).unwrap(),
            Kind::Upgrade
        );
        assert!(
            expand(
                "upgrade".parse().unwrap(),
                "fn r(ctx: &ReducerContext, from: u32, to: u32) -> Result<(), String> { Ok(()) }"
                    .parse()
                    .unwrap()
            )
            .is_ok()
        );
        assert!(error_of("tick", "fn r(ctx: &ReducerContext, dt: f64) {}").contains("dt: f32"));
        assert!(
            expand(
                "tick".parse().unwrap(),
                "fn r(ctx: &ReducerContext, dt: f32) {}".parse().unwrap()
            )
            .is_ok()
        );
        assert!(
            expand(
                "scheduled".parse().unwrap(),
                "fn r(ctx: &ReducerContext, a: u32, b: Option<String>) {}"
                    .parse()
                    .unwrap()
            )
            .is_ok()
        );
    }
}
