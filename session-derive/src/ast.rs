//! The derive input read into a model of a session schema: a [`Container`] and its [`Field`]s.

use crate::attr;
use crate::case;
use crate::ctxt::Ctxt;
use syn::ext::IdentExt;
use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident, Type, Visibility};

/// The struct that `#[derive(SessionSchema)]` is on.
pub(crate) struct Container<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) vis: &'a Visibility,
    pub(crate) generics: &'a Generics,
    /// The named fields; `None` when the input is not a struct with named fields (an error has
    /// been recorded).
    pub(crate) fields: Option<Vec<Field<'a>>>,
}

/// One field of the schema: one session key.
pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    /// The field's `#[doc = ".."]` attributes, copied onto its key const.
    pub(crate) docs: Vec<&'a Attribute>,
    pub(crate) attrs: attr::Field,
    /// The name the value is stored under.
    pub(crate) stored_name: String,
    /// The associated const (`USER_ID`); `None` when it cannot be generated (an error has
    /// been recorded).
    pub(crate) const_ident: Option<Ident>,
}

impl<'a> Container<'a> {
    pub(crate) fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Self {
        let attrs = attr::Container::from_ast(cx, &input.attrs);
        let name = &input.ident;
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => Some(
                    named
                        .named
                        .iter()
                        .map(|field| Field::from_ast(cx, field, &attrs))
                        .collect(),
                ),
                Fields::Unnamed(unnamed) => {
                    cx.error_spanned_by(
                        unnamed,
                        format_args!(
                            "SessionSchema needs named fields, one per session key: \
                             write `struct {name} {{ user_id: u64 }}` instead of a tuple struct"
                        ),
                    );
                    None
                }
                Fields::Unit => {
                    cx.error_spanned_by(
                        name,
                        format_args!(
                            "SessionSchema needs named fields, one per session key: \
                             write `struct {name} {{ user_id: u64 }}`; for a session without \
                             flash messages, use `Session<Values>` (its flash schema is `()`)"
                        ),
                    );
                    None
                }
            },
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    format_args!(
                        "SessionSchema cannot be derived for an enum: a schema is a struct \
                         whose named fields are the session keys, like `struct {name} {{ \
                         user_id: u64 }}`; to store an enum, make it the type of a field"
                    ),
                );
                None
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    format_args!(
                        "SessionSchema cannot be derived for a union: a schema is a struct \
                         whose named fields are the session keys, like `struct {name} {{ \
                         user_id: u64 }}`"
                    ),
                );
                None
            }
        };
        Container {
            ident: name,
            vis: &input.vis,
            generics: &input.generics,
            fields,
        }
    }
}

impl<'a> Field<'a> {
    fn from_ast(cx: &Ctxt, field: &'a syn::Field, container: &attr::Container) -> Self {
        let ident = field.ident.as_ref().expect("named fields have identifiers");
        let attrs = attr::Field::from_ast(cx, &field.attrs);
        // `r#type` is stored as `type`, like serde does.
        let plain = ident.unraw().to_string();
        let stored_name = match (&attrs.rename, container.rename_all) {
            (Some(lit), _) => lit.value(),
            (None, Some(rule)) => rule.apply_to_field(&plain),
            (None, None) => plain.clone(),
        };
        let const_name = case::const_name(&plain);
        let const_ident = if let Ok(mut const_ident) = syn::parse_str::<Ident>(&const_name) {
            // Errors and "go to definition" on the const lead to the field.
            const_ident.set_span(ident.span());
            Some(const_ident)
        } else {
            cx.error_spanned_by(
                ident,
                format_args!(
                    "cannot name a key const after field `{plain}` (its upper-case form \
                     `{const_name}` is not an identifier); rename the field and keep the \
                     stored name with `#[session(rename = \"{stored_name}\")]`"
                ),
            );
            None
        };
        Field {
            ident,
            ty: &field.ty,
            docs: field.attrs.iter().filter(|attr| attr.path().is_ident("doc")).collect(),
            attrs,
            stored_name,
            const_ident,
        }
    }
}
