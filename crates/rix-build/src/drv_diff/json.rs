//! A [`DrvDiff`] as nix-diff's `--json` (aeson's encoding of its
//! `Nix.Diff.Types`: constructors as `"tag"`, changes as
//! `{"before", "now"}`, text chunks as `{"type": "Old"|"New"|"Both",
//! "content"}`, object keys sorted).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{
    Changed, DrvDiff, EnvDiff, InputDrvDiff, Item, OutputFields, OutputStructure, SourceFileDiff,
};

/// `diff` as nix-diff's JSON value.
pub fn to_json(diff: &DrvDiff) -> Value {
    match diff {
        DrvDiff::Same => tag("DerivationsAreTheSame", vec![]),
        DrvDiff::AlreadyCompared => tag("AlreadyCompared", vec![]),
        DrvDiff::NamesDontMatch(s) => {
            tag("NamesDontMatch", vec![("outputStructure", structure(s))])
        }
        DrvDiff::OutputsDontMatch(s) => {
            tag("OutputsDontMatch", vec![("outputStructure", structure(s))])
        }
        DrvDiff::Differs(d) => tag(
            "DerivationDiff",
            vec![
                ("outputStructure", structure(&d.structure)),
                (
                    "outputsDiff",
                    object(vec![
                        (
                            "extraOutputs",
                            opt(d.outputs.extra.as_ref(), |c| {
                                changed(c, |m: &BTreeMap<String, OutputFields>| {
                                    object_owned(
                                        m.iter()
                                            .map(|(k, f)| {
                                                (
                                                    k.clone(),
                                                    object(vec![
                                                        ("hash", f.hash.clone().into()),
                                                        ("hashAlgo", f.hash_algo.clone().into()),
                                                        ("path", f.path.clone().into()),
                                                    ]),
                                                )
                                            })
                                            .collect(),
                                    )
                                })
                            }),
                        ),
                        (
                            "outputHashDiff",
                            Value::Array(
                                d.outputs
                                    .hash_algo
                                    .iter()
                                    .map(|(n, c)| {
                                        object(vec![
                                            ("hashDifference", changed(c, |s| s.clone().into())),
                                            ("outputName", n.clone().into()),
                                        ])
                                    })
                                    .collect(),
                            ),
                        ),
                    ]),
                ),
                (
                    "platformDiff",
                    opt(d.platform.as_ref(), |c| changed(c, |s| s.clone().into())),
                ),
                (
                    "builderDiff",
                    opt(d.builder.as_ref(), |c| changed(c, |s| s.clone().into())),
                ),
                ("argumentsDiff", opt(d.args.as_ref(), |a| items(a))),
                (
                    "sourcesDiff",
                    object(vec![
                        (
                            "extraSrcNames",
                            opt(d.sources.extra_names.as_ref(), |c| changed(c, set)),
                        ),
                        (
                            "srcFilesDiff",
                            Value::Array(d.sources.files.iter().map(source_file).collect()),
                        ),
                    ]),
                ),
                (
                    "inputsDiff",
                    object(vec![
                        (
                            "inputExtraNames",
                            opt(d.inputs.extra_names.as_ref(), |c| changed(c, set)),
                        ),
                        (
                            "inputDerivationDiffs",
                            Value::Array(d.inputs.drvs.iter().map(input).collect()),
                        ),
                    ]),
                ),
                ("envDiff", opt(d.env.as_ref(), env)),
            ],
        ),
    }
}

fn source_file(f: &SourceFileDiff) -> Value {
    match f {
        SourceFileDiff::One { name, content } => tag(
            "OneSourceFileDiff",
            vec![
                ("srcName", name.clone().into()),
                ("srcContentDiff", opt(content.as_ref(), |c| items(c))),
            ],
        ),
        SourceFileDiff::Some { name, paths } => tag(
            "SomeSourceFileDiff",
            vec![
                ("srcName", name.clone().into()),
                (
                    "srcFileDiff",
                    changed(paths, |v| {
                        Value::Array(v.iter().map(|p| p.clone().into()).collect())
                    }),
                ),
            ],
        ),
    }
}

fn input(i: &InputDrvDiff) -> Value {
    match i {
        InputDrvDiff::One { name, diff } => tag(
            "OneDerivationDiff",
            vec![("drvName", name.clone().into()), ("drvDiff", to_json(diff))],
        ),
        InputDrvDiff::Some { name, extra } => tag(
            "SomeDerivationsDiff",
            vec![
                ("drvName", name.clone().into()),
                (
                    "extraPartsDiff",
                    changed(extra, |m: &BTreeMap<String, BTreeSet<String>>| {
                        object_owned(m.iter().map(|(p, o)| (p.clone(), set(o))).collect())
                    }),
                ),
            ],
        ),
    }
}

fn env(e: &EnvDiff) -> Value {
    match e {
        EnvDiff::Equal => tag("EnvironmentsAreEqual", vec![]),
        EnvDiff::Differs { extra, values } => tag(
            "EnvironmentDiff",
            vec![
                (
                    "extraEnvDiff",
                    changed(extra, |m: &BTreeMap<String, String>| {
                        object_owned(
                            m.iter()
                                .map(|(k, v)| (k.clone(), v.clone().into()))
                                .collect(),
                        )
                    }),
                ),
                (
                    "envContentDiff",
                    Value::Array(
                        values
                            .iter()
                            .map(|(k, d)| {
                                object(vec![
                                    ("envKey", k.clone().into()),
                                    ("envValueDiff", items(d)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ],
        ),
    }
}

fn structure(c: &Changed<OutputStructure>) -> Value {
    changed(c, |s| {
        object(vec![
            ("derivationOutputs", set(&s.outputs)),
            ("derivationPath", s.path.clone().into()),
        ])
    })
}

fn items(v: &[Item<String>]) -> Value {
    Value::Array(
        v.iter()
            .map(|i| {
                let (t, c) = match i {
                    Item::Old(c) => ("Old", c),
                    Item::New(c) => ("New", c),
                    Item::Both(c) => ("Both", c),
                };
                object(vec![("content", c.clone().into()), ("type", t.into())])
            })
            .collect(),
    )
}

fn set(s: &BTreeSet<String>) -> Value {
    Value::Array(s.iter().map(|x| x.clone().into()).collect())
}

fn changed<T>(c: &Changed<T>, f: impl Fn(&T) -> Value) -> Value {
    object(vec![("before", f(&c.before)), ("now", f(&c.now))])
}

fn opt<T>(v: Option<&T>, f: impl Fn(&T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

fn tag(name: &str, mut fields: Vec<(&str, Value)>) -> Value {
    fields.push(("tag", name.into()));
    object(fields)
}

/// An object with its keys sorted, as aeson writes them.
fn object(fields: Vec<(&str, Value)>) -> Value {
    object_owned(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn object_owned(mut fields: Vec<(String, Value)>) -> Value {
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(fields.into_iter().collect::<Map<String, Value>>())
}
