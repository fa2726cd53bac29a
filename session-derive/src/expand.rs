//! Token generation: the key consts, the `SessionSchema` impl, the spanned trait assertions and
//! the dead-code guard.

use crate::ast::{Container, Field};
use crate::check;
use crate::ctxt::Ctxt;
use crate::render::render;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident};

/// `#[derive(SessionSchema)]`: the generated items, followed by every error found.
///
/// When there are errors the items are still generated as far as they can be (a struct with a
/// bad attribute still gets its keys and its impl), so that the user sees our errors rather
/// than a cascade of "no associated item named `USER_ID`" and "`SessionSchema` is not
/// implemented" from the code that uses the schema.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let mut cont = Container::from_ast(&cx, input);
    check::check(&cx, &mut cont);
    let items = if cont.generics.params.is_empty() {
        expand(&cont)
    } else {
        // Nothing sensible can be generated for a generic struct.
        TokenStream::new()
    };
    let errors = cx.check().err().map(|err| err.to_compile_error());
    quote! {
        #items
        #errors
    }
}

fn expand(cont: &Container<'_>) -> TokenStream {
    let ident = cont.ident;
    let fields = cont.fields.as_deref().unwrap_or_default();

    let stored_names = fields.iter().map(|field| &field.stored_name);
    let owner = cont
        .fields
        .iter()
        .flatten()
        .find(|field| field.attrs.owner.is_some() && field.const_ident.is_some());
    let owner_items = owner.map(|field| {
        let name = &field.stored_name;
        let ty = field.ty;
        quote! {
            const OWNER: ::core::option::Option<&'static str> = ::core::option::Option::Some(#name);
            fn __owner_index_json(
                json: &::core::primitive::str,
            ) -> ::core::option::Option<::std::string::String> {
                ::typed_sessions::__private::owner_index_json::<#ty>(json)
            }
        }
    });
    let schema_impl = quote! {
        #[automatically_derived]
        impl ::typed_sessions::__private::SessionSchema for #ident {
            const STORED_NAMES: &'static [&'static str] = &[#(#stored_names),*];
            #owner_items
        }
    };
    // A schema with an owner lists its sessions; one without can be a flash schema (a flash
    // message is nobody's login).
    let role_impl = match owner {
        Some(field) => {
            let ty = field.ty;
            let key = &field.const_ident;
            quote! {
                #[automatically_derived]
                impl ::typed_sessions::__private::OwnedSchema for #ident {
                    type Owner = #ty;
                    const OWNER_KEY: ::typed_sessions::__private::Key<Self, #ty> = #ident::#key;
                }
            }
        }
        None => quote! {
            #[automatically_derived]
            impl ::typed_sessions::__private::FlashSchema for #ident {}
        },
    };
    let Some(fields) = &cont.fields else {
        // Not a struct with named fields: the impls alone keep `Session<#ident>` from adding
        // errors to ours.
        return quote!(#schema_impl #role_impl);
    };

    let keys = fields.iter().map(|field| key_const(cont, field));
    let assertions = fields.iter().map(assert_field_type);
    let dead_code_guard = dead_code_guard(cont, fields);

    quote! {
        #[automatically_derived]
        impl #ident {
            #(#keys)*
        }

        #schema_impl
        #role_impl

        const _: () = {
            #(#assertions)*
            #dead_code_guard
        };
    }
}

/// `pub const USER_ID: Key<Values, u64> = Key::__new("user_id");`, with the field's docs.
fn key_const(cont: &Container<'_>, field: &Field<'_>) -> TokenStream {
    let Some(const_ident) = &field.const_ident else {
        return TokenStream::new();
    };
    let schema = cont.ident;
    let vis = cont.vis;
    let ty = field.ty;
    let stored_name = &field.stored_name;
    let docs = &field.docs;
    let ty_text = render(ty.to_token_stream());
    let generated = if docs.is_empty() {
        format!(" Session key `{schema}::{const_ident}`: a `{ty_text}`, stored as `{stored_name:?}`.")
    } else {
        format!(" Stored as `{stored_name:?}`; the value is a `{ty_text}`.")
    };
    let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
    quote! {
        #(#docs)*
        #separator
        #[doc = #generated]
        #vis const #const_ident: ::typed_sessions::__private::Key<#schema, #ty> =
            ::typed_sessions::__private::Key::__new(#stored_name);
    }
}

/// The field type must be storable. Spanned on the user's type, so that the error's caret is
/// on it.
///
/// Errors that rustc reports on the whole call rather than on the type argument (such as "not
/// general enough" for `&'static str`) span from the call's first token to its last; so the
/// tokens before the type carry the span of its first token and those after it the span of its
/// last, and the caret covers exactly the type, even on stable Rust where spans cannot be joined.
fn assert_field_type(field: &Field<'_>) -> TokenStream {
    let ty = field.ty;
    let mut tokens = ty.to_token_stream().into_iter();
    let first = tokens.next().map_or_else(|| ty.span(), |tree| tree.span());
    let last = tokens.last().map_or(first, |tree| tree.span());
    [
        "assert_serialize",
        "assert_deserialize_owned",
        "assert_send_sync_static",
    ]
    .iter()
    .map(|assert| {
        let assert = Ident::new(assert, first);
        let start = quote_spanned!(first=> ::typed_sessions::__private::#assert::<);
        let end = quote_spanned!(last=> >(););
        quote!(#start #ty #end)
    })
    .collect()
}

/// A schema struct is never built and its fields are never read: it only declares keys. Under
/// `#![deny(warnings)]` the user's build would fail on "struct is never constructed" / "field
/// is never read". This function, which nobody calls, builds the struct and reads each field;
/// `#[allow(dead_code)]` makes it a root of rustc's dead-code analysis, so that both uses
/// count. (An `#[automatically_derived]` impl would not do: its uses are ignored.)
fn dead_code_guard(cont: &Container<'_>, fields: &[Field<'_>]) -> TokenStream {
    let schema = cont.ident;
    let names: Vec<_> = fields.iter().map(|field| field.ident).collect();
    let bindings: Vec<_> = (0..fields.len())
        .map(|i| quote::format_ident!("__field{}", i))
        .collect();
    quote! {
        #[allow(dead_code, clippy::all, clippy::pedantic)]
        fn __typed_sessions_dead_code_guard(schema: #schema) -> #schema {
            let #schema { #(#names: #bindings),* } = schema;
            #schema { #(#names: #bindings),* }
        }
    }
}

#[cfg(test)]
mod tests {
    fn expand(input: &str) -> String {
        let input: syn::DeriveInput = syn::parse_str(input).unwrap();
        super::derive(&input).to_string()
    }

    #[test]
    fn field_docs_are_copied_then_the_generated_line() {
        let out = expand(
            "pub struct Values {
                /// Logged-in user.
                #[session(rename = \"uid\")]
                user_id: u64,
                cart: Vec<String>,
            }",
        );
        let docs = out.find("# [doc = \" Logged-in user.\"]").expect(&out);
        let blank = out.find("# [doc = \"\"]").expect(&out);
        let generated = out
            .find("# [doc = \" Stored as `\\\"uid\\\"`; the value is a `u64`.\"]")
            .expect(&out);
        let user_id = out.find("pub const USER_ID").expect(&out);
        assert!(docs < blank && blank < generated && generated < user_id, "{out}");
        assert!(
            out.contains(
                "# [doc = \" Session key `Values::CART`: a `Vec<String>`, stored as \
                 `\\\"cart\\\"`.\"] pub const CART"
            ),
            "{out}"
        );
        assert!(!out.contains("# [session"), "the helper attribute is not copied: {out}");
    }

    #[test]
    fn keys_take_the_visibility_of_the_struct() {
        let out = expand("pub(crate) struct Values { pub user_id: u64 }");
        assert!(out.contains("pub (crate) const USER_ID"), "{out}");
        let out = expand("struct Values { pub user_id: u64 }");
        assert!(out.contains("] const USER_ID"), "{out}");
    }

    #[test]
    fn generated_paths_are_absolute() {
        let out = expand("struct Values { user_id: u64 }");
        for path in ["Key", "SessionSchema", "assert_serialize"] {
            assert!(
                out.contains(&format!(":: typed_sessions :: __private :: {path}")),
                "{out}"
            );
        }
        assert!(
            out.contains("STORED_NAMES : & 'static [& 'static str] = & [\"user_id\"]"),
            "{out}"
        );
    }

    #[test]
    fn errors_still_come_with_the_keys() {
        // A bad attribute is reported, but the keys and the impl are still generated, so that
        // code using them does not add errors of its own.
        let out = expand("struct Values { #[session(nope)] user_id: u64 }");
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("const USER_ID"), "{out}");
        assert!(
            out.contains("impl :: typed_sessions :: __private :: SessionSchema for Values"),
            "{out}"
        );
        // Nothing but the error for a generic struct.
        let out = expand("struct Values<T> { user_id: T }");
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(!out.contains("impl"), "{out}");
    }
}
