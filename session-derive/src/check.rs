//! Checks on the whole schema, once every field has been read: no generics, no two keys with
//! the same stored name or the same const, at most one owner.

use crate::ast::{Container, Field};
use crate::ctxt::Ctxt;
use quote::ToTokens;
use std::collections::HashMap;

/// Records every problem in `cont`; fields whose const cannot be generated get
/// `const_ident = None`, so that the expansion does not add rustc errors on top of ours.
pub(crate) fn check(cx: &Ctxt, cont: &mut Container<'_>) {
    check_generics(cx, cont);
    if let Some(fields) = &mut cont.fields {
        check_stored_names(cx, fields);
        check_const_names(cx, fields);
        check_one_owner(cx, fields);
    }
}

/// A session has one owner: the index lists it under one value.
fn check_one_owner(cx: &Ctxt, fields: &mut [Field<'_>]) {
    let mut first: Option<String> = None;
    for field in fields.iter_mut() {
        let Some(path) = &field.attrs.owner else {
            continue;
        };
        match &first {
            None => first = Some(field.ident.to_string()),
            Some(first) => {
                cx.error_spanned_by(
                    path,
                    format_args!(
                        "a schema has at most one owner, and field `{first}` already is it; \
                         remove `#[session(owner)]` from field `{}`",
                        field.ident
                    ),
                );
                field.attrs.owner = None;
            }
        }
    }
}

/// Keys are `'static` consts that name concrete value types: a type, lifetime or const
/// parameter has nothing to stand for.
fn check_generics(cx: &Ctxt, cont: &Container<'_>) {
    let generics = cont.generics;
    if generics.params.is_empty() {
        return;
    }
    cx.error_spanned_by(
        generics,
        format_args!(
            "SessionSchema cannot be generic: a session schema must be 'static and name \
             concrete value types; remove `{}`",
            crate::render::render(generics.to_token_stream())
        ),
    );
}

/// Two keys stored under one name would overwrite each other.
fn check_stored_names(cx: &Ctxt, fields: &[Field<'_>]) {
    let mut seen: HashMap<&str, &Field<'_>> = HashMap::new();
    for field in fields {
        let Some(first) = seen.get(field.stored_name.as_str()) else {
            seen.insert(&field.stored_name, field);
            continue;
        };
        let how = |f: &Field<'_>| match &f.attrs.rename {
            Some(_) => format!("field `{}` (by its `rename`)", f.ident),
            None => format!("field `{}`", f.ident),
        };
        let msg = format!(
            "two session keys are stored as {:?}: {} and {}; each key needs its own stored \
             name, so give this one another with `#[session(rename = \"..\")]`",
            field.stored_name,
            how(first),
            how(field)
        );
        match &field.attrs.rename {
            Some(lit) => cx.error_spanned_by(lit, msg),
            None => cx.error_spanned_by(field.ident, msg),
        }
    }
}

/// `userId` and `user_id` both give `USER_ID`; and a `STORED_NAMES` key would hide the trait's
/// `SessionSchema::STORED_NAMES`.
fn check_const_names(cx: &Ctxt, fields: &mut [Field<'_>]) {
    let mut seen: HashMap<String, String> = HashMap::new();
    for field in fields.iter_mut() {
        let Some(const_ident) = &field.const_ident else {
            continue;
        };
        let const_name = const_ident.to_string();
        if const_name == "STORED_NAMES" {
            cx.error_spanned_by(
                field.ident,
                format_args!(
                    "field `{}` would generate the key const `STORED_NAMES`, which hides \
                     `SessionSchema::STORED_NAMES`; rename the field and keep the stored name \
                     with `#[session(rename = {:?})]`",
                    field.ident, field.stored_name
                ),
            );
            field.const_ident = None;
        } else if let Some(first) = seen.get(&const_name) {
            cx.error_spanned_by(
                field.ident,
                format_args!(
                    "fields `{first}` and `{}` would both generate the key const \
                     `{const_name}`; rename one of them (`#[session(rename = \"..\")]` keeps \
                     its stored name)",
                    field.ident
                ),
            );
            field.const_ident = None;
        } else {
            seen.insert(const_name, field.ident.to_string());
        }
    }
}
