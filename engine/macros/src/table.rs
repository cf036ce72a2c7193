//! `#[table]`: a struct with named fields becomes a table row type.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Ident, Item, ItemStruct, LitStr, Meta, Type};

use crate::types::{Checks, ColumnType, ColumnTypeExt, column_type};
use crate::{RESERVED_PREFIX, ident_name};

/// The most columns a table may have (`locus_types::MAX_COLUMNS`).
const MAX_COLUMNS: usize = 256;

/// Methods of the generated handle, which index accessors must not shadow.
const HANDLE_METHODS: &[&str] = &["insert", "iter", "count", "delete"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IndexAttr {
    Unique,
    BTree,
    Spatial,
}

struct Column {
    ident: Ident,
    name: String,
    ty: Type,
    col: ColumnType,
    primary_key: Option<Span>,
    auto_inc: Option<Span>,
    index: Option<(IndexAttr, Span)>,
    owner: Option<Span>,
    /// `#[default(expr)]`: what rows stored before the column existed get on a module upgrade.
    default: Option<syn::Expr>,
}

/// The options of `#[table(...)]`.
struct Args {
    /// `public` (the last of `public` / `private` wins).
    public: bool,
    /// `movable`: where it was written.
    movable: Option<Span>,
    /// `name = "..."`.
    name: Option<LitStr>,
}

/// Expand `#[table(attr)] item`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let Args {
        public,
        movable,
        name: name_override,
    } = parse_args(attr)?;
    let mut item = match syn::parse2::<Item>(item)? {
        Item::Struct(s) => s,
        Item::Enum(e) => return Err(not_a_struct(e.enum_token.span)),
        Item::Union(u) => return Err(not_a_struct(u.union_token.span)),
        other => return Err(not_a_struct(other.span())),
    };
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &item.generics,
            "a #[table] struct cannot be generic",
        ));
    }
    if let Some(attr) = item.attrs.iter().find(|a| a.path().is_ident("serde")) {
        return Err(syn::Error::new_spanned(
            attr,
            "#[table] controls the row's serde encoding (one MessagePack array, one element per field); remove \
             this #[serde(...)] attribute",
        ));
    }
    let struct_ident = item.ident.clone();
    let table_name = match &name_override {
        Some(lit) => {
            let name = lit.value();
            if syn::parse_str::<Ident>(&name).is_err() {
                return Err(syn::Error::new_spanned(
                    lit,
                    "a table name must be a Rust identifier: it is also the name of the accessor (`ctx.db.<name>()`)",
                ));
            }
            name
        }
        None => snake_case(&ident_name(&struct_ident)),
    };
    if table_name.starts_with(RESERVED_PREFIX) {
        let span = name_override
            .as_ref()
            .map_or(struct_ident.span(), LitStr::span);
        return Err(syn::Error::new(
            span,
            format!("table names starting with `{RESERVED_PREFIX}` are reserved for the engine"),
        ));
    }

    let mut checks = Checks::default();
    let columns = parse_columns(&mut item, &mut checks)?;
    if columns.len() > MAX_COLUMNS {
        return Err(syn::Error::new_spanned(
            &item.ident,
            format!("a table has at most {MAX_COLUMNS} columns"),
        ));
    }
    let pks: Vec<usize> = (0..columns.len())
        .filter(|&i| columns[i].primary_key.is_some())
        .collect();
    let pk = match pks.as_slice() {
        [pk] => *pk,
        [] => {
            return Err(syn::Error::new_spanned(
                &item.ident,
                "a #[table] needs exactly one #[primary_key] field",
            ));
        }
        [_, second, ..] => {
            return Err(syn::Error::new(
                columns[*second].primary_key.expect("pk"),
                "a table has exactly one #[primary_key]; this is the second",
            ));
        }
    };
    validate_columns(&columns, pk)?;
    if let Some(span) = movable
        && !columns
            .iter()
            .any(|c| matches!(c.index, Some((IndexAttr::Spatial, _))))
    {
        return Err(syn::Error::new(
            span,
            "a movable table needs a #[spatial] column: the engine places each row in a region by it",
        ));
    }

    let expanded = generate(
        &item,
        &columns,
        pk,
        &table_name,
        Flags {
            public,
            movable: movable.is_some(),
        },
        checks,
    );
    Ok(expanded)
}

fn not_a_struct(span: Span) -> syn::Error {
    syn::Error::new(
        span,
        "#[table] can only be used on a struct with named fields",
    )
}

fn parse_args(attr: TokenStream) -> syn::Result<Args> {
    let mut args = Args {
        public: false,
        movable: None,
        name: None,
    };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("public") {
            args.public = true;
            Ok(())
        } else if meta.path.is_ident("private") {
            args.public = false;
            Ok(())
        } else if meta.path.is_ident("movable") {
            args.movable = Some(meta.path.span());
            Ok(())
        } else if meta.path.is_ident("name") {
            args.name = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else {
            Err(meta.error(
                "unknown #[table] option; expected `public`, `private`, `movable` or `name = \"...\"`",
            ))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(args)
}

/// Whether a token tree mentions one of `idents` anywhere.
fn mentions(tokens: TokenStream, idents: &[&str]) -> Option<String> {
    for tt in tokens {
        match tt {
            TokenTree::Ident(i) if idents.iter().any(|n| i == n) => return Some(i.to_string()),
            TokenTree::Group(g) => {
                if let Some(found) = mentions(g.stream(), idents) {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_columns(item: &mut ItemStruct, checks: &mut Checks) -> syn::Result<Vec<Column>> {
    let fields = match &mut item.fields {
        Fields::Named(f) => &mut f.named,
        Fields::Unnamed(f) => {
            return Err(syn::Error::new_spanned(
                f,
                "#[table] needs named fields (each field is a named column), not a tuple struct",
            ));
        }
        Fields::Unit => {
            return Err(syn::Error::new_spanned(
                &item.ident,
                "#[table] needs a struct with named fields, not a unit struct",
            ));
        }
    };
    let mut errors: Option<syn::Error> = None;
    let mut push_err = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let mut columns = Vec::with_capacity(fields.len());
    for field in fields.iter_mut() {
        let ident = field.ident.clone().expect("named field");
        let mut primary_key = None;
        let mut auto_inc = None;
        let mut index: Option<(IndexAttr, Span)> = None;
        let mut owner = None;
        let mut opaque = false;
        let mut default = None;
        let mut kept: Vec<Attribute> = Vec::with_capacity(field.attrs.len());
        let mut set_index = |kind: IndexAttr, span: Span, push_err: &mut dyn FnMut(syn::Error)| {
            if index.is_some() {
                push_err(syn::Error::new(
                    span,
                    "a column has at most one of #[unique], #[index(btree)] and #[spatial]",
                ));
            }
            index = Some((kind, span));
        };
        for attr in field.attrs.drain(..) {
            let path = attr.path();
            let span = attr.span();
            let flag = |attr: &Attribute| match &attr.meta {
                Meta::Path(_) => Ok(()),
                _ => Err(syn::Error::new_spanned(
                    attr,
                    "this attribute takes no arguments",
                )),
            };
            if path.is_ident("primary_key") {
                if let Err(e) = flag(&attr) {
                    push_err(e);
                }
                primary_key = Some(span);
            } else if path.is_ident("auto_inc") {
                if let Err(e) = flag(&attr) {
                    push_err(e);
                }
                auto_inc = Some(span);
            } else if path.is_ident("unique") {
                if let Err(e) = flag(&attr) {
                    push_err(e);
                }
                set_index(IndexAttr::Unique, span, &mut push_err);
            } else if path.is_ident("spatial") {
                if let Err(e) = flag(&attr) {
                    push_err(e);
                }
                set_index(IndexAttr::Spatial, span, &mut push_err);
            } else if path.is_ident("owner") {
                if let Err(e) = flag(&attr) {
                    push_err(e);
                }
                owner = Some(span);
            } else if path.is_ident("opaque") {
                if let Err(e) = flag(&attr) {
                    push_err(e);
                }
                opaque = true;
            } else if path.is_ident("default") {
                match attr.parse_args::<syn::Expr>() {
                    Ok(expr) => default = Some(expr),
                    Err(_) => push_err(syn::Error::new_spanned(
                        &attr,
                        "expected #[default(expression)], e.g. #[default(100)]",
                    )),
                }
            } else if path.is_ident("index") {
                let parsed = attr.parse_args::<Ident>().ok().and_then(|kind| {
                    match kind.to_string().as_str() {
                        "btree" => Some(IndexAttr::BTree),
                        "unique" => Some(IndexAttr::Unique),
                        "spatial" => Some(IndexAttr::Spatial),
                        _ => None,
                    }
                });
                match parsed {
                    Some(kind) => set_index(kind, span, &mut push_err),
                    None => push_err(syn::Error::new_spanned(
                        &attr,
                        "expected #[index(btree)], #[index(unique)] or #[index(spatial)]",
                    )),
                }
            } else {
                kept.push(attr);
            }
        }
        field.attrs = kept;
        let col = if opaque {
            ColumnType::Opaque
        } else {
            match column_type(&field.ty, checks) {
                Ok(col) => col,
                Err(e) => {
                    push_err(e);
                    ColumnType::Opaque
                }
            }
        };
        // The row must stay one array element per field, each encoded as its column type says.
        let forbidden: &[&str] = if col == ColumnType::Opaque {
            &[
                "skip",
                "skip_serializing",
                "skip_deserializing",
                "skip_serializing_if",
                "flatten",
            ]
        } else {
            &[
                "skip",
                "skip_serializing",
                "skip_deserializing",
                "skip_serializing_if",
                "flatten",
                "with",
                "serialize_with",
                "deserialize_with",
            ]
        };
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
            if let Some(found) = mentions(attr.meta.to_token_stream(), forbidden) {
                push_err(syn::Error::new_spanned(
                    attr,
                    format!(
                        "`#[serde({found})]` would change the row encoding of column `{}`; a row is one MessagePack \
                         value per field, encoded as the column's type says",
                        ident_name(&ident)
                    ),
                ));
            }
        }
        if col.is_bytes_like() {
            field.attrs.push(syn::parse_quote!(
                #[serde(with = "::locus_module::__private::serde_bytes")]
            ));
        }
        columns.push(Column {
            name: ident_name(&ident),
            ident,
            ty: field.ty.clone(),
            col,
            primary_key,
            auto_inc,
            index,
            owner,
            default,
        });
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(columns),
    }
}

fn validate_columns(columns: &[Column], pk: usize) -> syn::Result<()> {
    let mut errors: Option<syn::Error> = None;
    let mut push_err = |e: syn::Error| match &mut errors {
        Some(all) => all.combine(e),
        None => errors = Some(e),
    };
    let mut spatial_seen = false;
    let mut owner_seen = false;
    for (i, c) in columns.iter().enumerate() {
        if let Some(span) = c.auto_inc {
            if i != pk {
                push_err(syn::Error::new(
                    span,
                    "#[auto_inc] goes on the #[primary_key] field",
                ));
            } else if !c.col.is_integer() {
                push_err(syn::Error::new(
                    span,
                    "#[auto_inc] needs an integer primary key (i8…i64 or u8…u64)",
                ));
            }
        }
        if i == pk {
            if !c.col.is_indexable() {
                push_err(syn::Error::new_spanned(
                    &c.ty,
                    "a primary key must be an indexable type (not an opaque serde type)",
                ));
            }
            if let Some((IndexAttr::Spatial, span)) = c.index {
                push_err(syn::Error::new(
                    span,
                    "the primary key cannot be the #[spatial] column",
                ));
            }
        }
        if let Some((kind, span)) = c.index {
            match kind {
                IndexAttr::Spatial => {
                    if c.col != ColumnType::Vec2 {
                        push_err(syn::Error::new(span, "#[spatial] needs a `Vec2` column"));
                    }
                    if spatial_seen {
                        push_err(syn::Error::new(
                            span,
                            "a table has at most one #[spatial] column",
                        ));
                    }
                    spatial_seen = true;
                }
                IndexAttr::Unique | IndexAttr::BTree => {
                    if !c.col.is_indexable() {
                        push_err(syn::Error::new(
                            span,
                            "an opaque serde type cannot be indexed",
                        ));
                    }
                }
            }
        }
        if (i == pk || c.index.is_some()) && HANDLE_METHODS.contains(&c.name.as_str()) {
            push_err(syn::Error::new_spanned(
                &c.ident,
                format!(
                    "an indexed column cannot be named `{}`: its accessor would clash with the table handle's \
                     method of that name",
                    c.name
                ),
            ));
        }
        if let Some(span) = c.owner {
            if c.col != ColumnType::Identity {
                push_err(syn::Error::new(span, "#[owner] needs an `Identity` column"));
            }
            if owner_seen {
                push_err(syn::Error::new(
                    span,
                    "a table has at most one #[owner] column",
                ));
            }
            owner_seen = true;
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The table-wide flags of the `locus_types::TableDef` the generated code builds.
struct Flags {
    /// `TableAccess::Public` (else private).
    public: bool,
    /// `TableDef::movable`.
    movable: bool,
}

fn generate(
    item: &ItemStruct,
    columns: &[Column],
    pk: usize,
    table_name: &str,
    Flags { public, movable }: Flags,
    checks: Checks,
) -> TokenStream {
    let vis = &item.vis;
    let row = &item.ident;
    let row_name = ident_name(row);
    let handle = format_ident!("{}Handle", row);
    let accessor_trait = format_ident!("{}Table", row);
    let accessor = format_ident!("{}", table_name);
    let checks = checks.into_tokens();
    let pk_col = &columns[pk];
    let pk_ident = &pk_col.ident;
    let pk_ty = &pk_col.ty;
    let codec = |c: &Column| {
        if c.col.is_bytes_like() {
            quote!(::locus_module::index::AsBytes)
        } else {
            quote!(::locus_module::index::Plain)
        }
    };
    let pk_codec = codec(pk_col);

    let column_defs = columns.iter().map(|c| {
        let name = &c.name;
        let ty = c.col.tokens();
        let default = match &c.default {
            None => quote!(::std::option::Option::None),
            Some(expr) if c.col.is_bytes_like() => quote!(::std::option::Option::Some(
                ::locus_module::__private::encode_default_bytes(&(#expr))
            )),
            Some(expr) => {
                let field_ty = &c.ty;
                quote!(::std::option::Option::Some({
                    let value: #field_ty = ::std::convert::Into::into(#expr);
                    ::locus_module::__private::encode_default(&value)
                }))
            }
        };
        quote!(::locus_module::ColumnDef {
            name: ::std::string::String::from(#name),
            ty: #ty,
            default: #default,
        })
    });
    let index_defs = columns.iter().enumerate().filter_map(|(i, c)| {
        let (kind, _) = c.index?;
        let kind = match kind {
            IndexAttr::Unique => quote!(Unique),
            IndexAttr::BTree => quote!(BTree),
            IndexAttr::Spatial => quote!(Spatial),
        };
        let i = i as u16;
        Some(quote!(::locus_module::IndexDef {
            column: ::locus_module::ColumnId(#i),
            kind: ::locus_module::IndexKind::#kind,
        }))
    });
    let pk_index = pk as u16;
    let auto_inc = pk_col.auto_inc.is_some();
    let access = if public {
        quote!(::locus_module::TableAccess::Public)
    } else {
        quote!(::locus_module::TableAccess::Private)
    };
    let owner = match columns.iter().position(|c| c.owner.is_some()) {
        Some(i) => {
            let i = i as u16;
            quote!(::std::option::Option::Some(::locus_module::ColumnId(#i)))
        }
        None => quote!(::std::option::Option::None),
    };
    let set_pk = if pk_col.col.is_integer() {
        quote!(self.#pk_ident = ::locus_module::__private::FromKeyBits::from_key_bits(key);)
    } else {
        quote!(let _ = key;)
    };

    let accessors = columns.iter().enumerate().filter_map(|(i, c)| {
        let ident = &c.ident;
        let ty = &c.ty;
        let i = i as u16;
        let cod = codec(c);
        let name = &c.name;
        if i as usize == pk {
            let (order, doc) = if c.index.is_some() {
                (
                    quote!(::locus_module::index::Ordered),
                    format!(
                        "The primary key `{name}`: find, update and delete rows by it, and ranges."
                    ),
                )
            } else {
                (
                    quote!(::locus_module::index::Unordered),
                    format!("The primary key `{name}`: find, update and delete rows by it."),
                )
            };
            return Some(quote! {
                #[doc = #doc]
                #[must_use]
                pub fn #ident(&self) -> ::locus_module::PrimaryKey<#row, #ty, #cod, #order> {
                    ::locus_module::PrimaryKey::__new(#i)
                }
            });
        }
        let (kind, _) = c.index?;
        Some(match kind {
            IndexAttr::Unique => {
                let doc = format!("The unique column `{name}`: find and delete rows by it.");
                quote! {
                    #[doc = #doc]
                    #[must_use]
                    pub fn #ident(&self) -> ::locus_module::UniqueIndex<#row, #ty, #cod> {
                        ::locus_module::UniqueIndex::__new(#i)
                    }
                }
            }
            IndexAttr::BTree => {
                let doc = format!("The btree index on `{name}`: filter rows by value or range.");
                quote! {
                    #[doc = #doc]
                    #[must_use]
                    pub fn #ident(&self) -> ::locus_module::BTreeIndex<#row, #ty, #cod> {
                        ::locus_module::BTreeIndex::__new(#i)
                    }
                }
            }
            IndexAttr::Spatial => {
                let doc = format!(
                    "The spatial index on `{name}`: rows within a radius or envelope, or nearest."
                );
                quote! {
                    #[doc = #doc]
                    #[must_use]
                    pub fn #ident(&self) -> ::locus_module::SpatialIndex<#row> {
                        ::locus_module::SpatialIndex::__new()
                    }
                }
            }
        })
    });

    let describe_export = format_ident!("__locus_describe_table_{}", table_name);
    let handle_doc = format!(
        "The table `{table_name}` (rows of [`{row_name}`]) in the running call's database: \
         `ctx.db.{table_name}()`."
    );
    let trait_doc = format!(
        "Gives [`Db`](::locus_module::Db) the accessor `{table_name}()` for table `{table_name}`; bring it into \
         scope (`use …::{accessor_trait};`) where reducers use the table."
    );
    let accessor_doc = format!("The table `{table_name}`.");
    let serde_path = quote!(::locus_module::__private::serde);
    let serde_crate = "::locus_module::__private::serde";
    let attrs = &item.attrs;
    let struct_token = &item.struct_token;
    let fields = &item.fields;
    let describe_span = row.span();
    let describe = quote_spanned! {describe_span=>
        ::locus_module::__guest! {
            const _: () = {
                #[doc(hidden)]
                #[allow(unsafe_code)]
                #[unsafe(no_mangle)]
                extern "C" fn #describe_export() -> u64 {
                    ::locus_module::__private::describe_table::<#row>()
                }
            };
        }
    };

    quote! {
        #[derive(#serde_path::Serialize, #serde_path::Deserialize)]
        #[serde(crate = #serde_crate)]
        #(#attrs)*
        #vis #struct_token #row #fields

        #checks

        impl ::locus_module::Table for #row {
            const NAME: &'static str = #table_name;
            type PrimaryKey = #pk_ty;

            fn def() -> ::locus_module::TableDef {
                ::locus_module::TableDef {
                    name: ::std::string::String::from(#table_name),
                    columns: ::std::vec![#(#column_defs),*],
                    primary_key: ::locus_module::ColumnId(#pk_index),
                    auto_inc: #auto_inc,
                    indexes: ::std::vec![#(#index_defs),*],
                    access: #access,
                    owner: #owner,
                    movable: #movable,
                }
            }

            #[inline]
            fn primary_key(&self) -> &#pk_ty {
                &self.#pk_ident
            }

            #[inline]
            fn __set_primary_key(&mut self, key: u64) {
                #set_pk
            }

            #[inline]
            fn __encode_primary_key(&self, out: &mut ::std::vec::Vec<u8>) {
                <#pk_codec as ::locus_module::index::KeyCodec<#pk_ty>>::encode_key(&self.#pk_ident, out)
            }

            #[inline]
            fn __encode_key(key: &#pk_ty, out: &mut ::std::vec::Vec<u8>) {
                <#pk_codec as ::locus_module::index::KeyCodec<#pk_ty>>::encode_key(key, out)
            }

            #[inline]
            fn __table_id() -> u32 {
                static ID: ::locus_module::__private::TableIdCache = ::locus_module::__private::TableIdCache::new();
                ID.get(#table_name)
            }
        }

        #[doc = #handle_doc]
        #[derive(Clone, Copy, Debug)]
        #vis struct #handle {
            _private: (),
        }

        #[allow(dead_code)]
        impl #handle {
            /// Insert a row; returns it with its primary key as stored (an `auto_inc` key of `0` is replaced by
            /// the next value of the table's sequence).
            ///
            /// # Errors
            ///
            /// [`InsertError`](::locus_module::InsertError) if a unique value is taken or the position is invalid.
            #[inline]
            pub fn insert(&self, row: #row) -> ::std::result::Result<#row, ::locus_module::InsertError> {
                ::locus_module::TableHandle::<#row>::new().insert(row)
            }

            /// Every row, in no particular order.
            #[inline]
            #[must_use]
            pub fn iter(&self) -> ::locus_module::RowIter<#row> {
                ::locus_module::TableHandle::<#row>::new().iter()
            }

            /// The number of rows.
            #[inline]
            #[must_use]
            pub fn count(&self) -> u64 {
                ::locus_module::TableHandle::<#row>::new().count()
            }

            /// Delete the row with `row`'s primary key; returns whether there was one.
            #[inline]
            pub fn delete(&self, row: &#row) -> bool {
                ::locus_module::TableHandle::<#row>::new().delete(row)
            }

            #(#accessors)*
        }

        impl ::locus_module::IntoTableHandle for #handle {
            type Row = #row;

            #[inline]
            fn into_table_handle(self) -> ::locus_module::TableHandle<#row> {
                ::locus_module::TableHandle::new()
            }
        }

        #[doc = #trait_doc]
        #[allow(dead_code)]
        #vis trait #accessor_trait {
            #[doc = #accessor_doc]
            fn #accessor(&self) -> #handle;
        }

        impl #accessor_trait for ::locus_module::Db {
            #[inline]
            fn #accessor(&self) -> #handle {
                #handle { _private: () }
            }
        }

        #describe
    }
}

/// `PlayerStats` → `player_stats`, `HTTPServer` → `http_server`.
pub(crate) fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(char::is_lowercase),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(attr: &str, item: &str) -> syn::Result<TokenStream> {
        expand(attr.parse().unwrap(), item.parse().unwrap())
    }

    fn error_of(attr: &str, item: &str) -> String {
        match expand_str(attr, item) {
            Ok(_) => panic!("expected an error for {item}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("Player"), "player");
        assert_eq!(snake_case("PlayerStats"), "player_stats");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("Item2D"), "item2_d");
        assert_eq!(snake_case("event_log"), "event_log");
    }

    #[test]
    fn a_valid_table_expands() {
        let out = expand_str(
            "public",
            "pub struct Player { #[primary_key] #[auto_inc] id: u64, #[unique] name: String, \
             #[spatial] pos: Vec2, #[index(btree)] level: u32, bag: Vec<u8> }",
        )
        .unwrap()
        .to_string();
        assert!(out.contains("PlayerHandle"));
        assert!(out.contains("PlayerTable"));
        assert!(out.contains("__locus_describe_table_player"));
        assert!(out.contains("serde_bytes"), "Vec<u8> is encoded as bin");
        assert!(
            !out.contains("primary_key ]"),
            "the column attributes are removed"
        );
    }

    #[test]
    fn structural_errors() {
        assert!(error_of("", "struct T { a: u32 }").contains("exactly one #[primary_key]"));
        assert!(
            error_of(
                "",
                "struct T { #[primary_key] a: u32, #[primary_key] b: u32 }"
            )
            .contains("this is the second")
        );
        assert!(error_of("", "struct T(u32);").contains("not a tuple struct"));
        assert!(error_of("", "enum T { A }").contains("struct with named fields"));
        assert!(error_of("", "struct T<X> { #[primary_key] a: X }").contains("cannot be generic"));
        assert!(
            error_of("bogus", "struct T { #[primary_key] a: u32 }")
                .contains("unknown #[table] option")
        );
        assert!(
            error_of("name = \"locus_x\"", "struct T { #[primary_key] a: u32 }")
                .contains("reserved")
        );
        assert!(
            error_of(
                "name = \"not an ident\"",
                "struct T { #[primary_key] a: u32 }"
            )
            .contains("Rust identifier")
        );
    }

    #[test]
    fn column_errors() {
        assert!(
            error_of("", "struct T { #[primary_key] #[auto_inc] a: String }")
                .contains("needs an integer primary key")
        );
        assert!(
            error_of("", "struct T { #[primary_key] a: u32, #[auto_inc] b: u32 }")
                .contains("goes on the #[primary_key]")
        );
        assert!(
            error_of(
                "",
                "struct T { #[primary_key] a: u32, #[spatial] p: (f32, f32) }"
            )
            .contains("needs a `Vec2` column")
        );
        assert!(
            error_of(
                "",
                "struct T { #[primary_key] a: u32, #[spatial] p: Vec2, #[spatial] q: Vec2 }"
            )
            .contains("at most one #[spatial]")
        );
        assert!(
            error_of("", "struct T { #[primary_key] a: u32, #[owner] o: u64 }")
                .contains("needs an `Identity` column")
        );
        assert!(error_of("", "struct T { #[primary_key] a: usize }").contains("width differs"));
        assert!(
            error_of(
                "",
                "struct T { #[primary_key] a: u32, #[index(btree)] m: MyEnum }"
            )
            .contains("cannot be indexed")
        );
        assert!(
            error_of(
                "",
                "struct T { #[primary_key] a: u32, #[index(hash)] m: u32 }"
            )
            .contains("#[index(btree)]")
        );
        assert!(
            error_of(
                "",
                "struct T { #[primary_key] a: u32, #[serde(skip)] m: u32 }"
            )
            .contains("would change the row encoding")
        );
        assert!(
            error_of(
                "",
                "struct T { #[primary_key] a: u32, #[unique] count: u32 }"
            )
            .contains("clash with the table handle")
        );
        assert!(
            error_of("", "struct T { #[primary_key] #[spatial] a: Vec2 }")
                .contains("cannot be the #[spatial] column")
        );
        assert!(expand_str("", "struct T { #[primary_key] #[index(btree)] a: u32 }").is_ok());
    }

    #[test]
    fn a_movable_table_needs_a_spatial_column_and_says_so_in_its_def() {
        assert!(
            error_of(
                "public, movable",
                "struct T { #[primary_key] a: u32, p: Vec2 }"
            )
            .contains("a movable table needs a #[spatial] column")
        );
        let def_of = |attr: &str| {
            expand_str(
                attr,
                "struct T { #[primary_key] a: u32, #[spatial] p: Vec2 }",
            )
            .unwrap()
            .to_string()
        };
        for (attr, movable) in [
            ("public, movable", true),
            ("movable", true),
            ("movable, private, name = \"t\"", true),
            ("public", false),
            ("", false),
        ] {
            let out = def_of(attr);
            assert!(
                out.contains(&format!("movable : {movable}")),
                "{attr}: {out}"
            );
        }
        assert!(def_of("movable").contains("TableAccess :: Private"));
    }
}
