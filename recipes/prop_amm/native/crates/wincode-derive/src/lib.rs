//! `#[derive(SchemaRead)]` and `#[derive(SchemaWrite)]` for the wincode stand-in
//! (docs/recipes.md, "prop_amm"): structs (named or tuple fields) read and written field by
//! field in declaration order, as wincode's bincode-compatible layout does.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields, Index};

fn struct_fields(input: &DeriveInput) -> Result<&Fields, syn::Error> {
    match &input.data {
        Data::Struct(data) => Ok(&data.fields),
        _ => Err(syn::Error::new_spanned(
            &input.ident,
            "the wincode stand-in derives SchemaRead/SchemaWrite for structs only",
        )),
    }
}

/// Reads each field with `SchemaRead::read`, in order.
#[proc_macro_derive(SchemaRead)]
pub fn derive_schema_read(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let fields = match struct_fields(&input) {
        Ok(fields) => fields,
        Err(err) => return err.to_compile_error().into(),
    };
    let name = &input.ident;
    let (_, ty_generics, where_clause) = input.generics.split_for_impl();
    let params = &input.generics.params;
    let body: Tokens = match fields {
        Fields::Named(named) => {
            let reads = named.named.iter().map(|f| {
                let ident = &f.ident;
                let ty = &f.ty;
                quote! { #ident: <#ty as ::wincode::SchemaRead<'__de>>::read(reader)? }
            });
            quote! { Ok(Self { #(#reads),* }) }
        }
        Fields::Unnamed(unnamed) => {
            let reads = unnamed.unnamed.iter().map(|f| {
                let ty = &f.ty;
                quote! { <#ty as ::wincode::SchemaRead<'__de>>::read(reader)? }
            });
            quote! { Ok(Self(#(#reads),*)) }
        }
        Fields::Unit => quote! { Ok(Self) },
    };
    let expanded = quote! {
        impl<'__de, #params> ::wincode::SchemaRead<'__de> for #name #ty_generics #where_clause {
            fn read(reader: &mut ::wincode::Reader<'__de>) -> ::wincode::ReadResult<Self> {
                #body
            }
        }
    };
    expanded.into()
}

/// Writes each field with `SchemaWrite::write`, in order.
#[proc_macro_derive(SchemaWrite)]
pub fn derive_schema_write(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let fields = match struct_fields(&input) {
        Ok(fields) => fields,
        Err(err) => return err.to_compile_error().into(),
    };
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let writes: Vec<Tokens> = match fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(|f| {
                let ident = &f.ident;
                quote! { ::wincode::SchemaWrite::write(&self.#ident, out); }
            })
            .collect(),
        Fields::Unnamed(unnamed) => (0..unnamed.unnamed.len())
            .map(|i| {
                let index = Index::from(i);
                quote! { ::wincode::SchemaWrite::write(&self.#index, out); }
            })
            .collect(),
        Fields::Unit => Vec::new(),
    };
    let expanded = quote! {
        impl #impl_generics ::wincode::SchemaWrite for #name #ty_generics #where_clause {
            fn write(&self, out: &mut ::std::vec::Vec<u8>) {
                #(#writes)*
            }
        }
    };
    expanded.into()
}
