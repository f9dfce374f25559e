//! `template.yaml` as the one source of truth for local resources: queues, tables and secrets
//! are created in moto with the properties the template gives them, and each function's
//! environment is the template's, with `Ref`/`GetAtt`/`Sub` resolved against what was created.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_norway::Value;

use crate::LOCAL_REGION;

const ACCOUNT_ID: &str = "123456789012";

/// The parsed template.
pub struct Template {
    parameters: serde_norway::Mapping,
    globals: Value,
    resources: BTreeMap<String, Value>,
}

/// What provisioning created, by logical id.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    pub stack_name: String,
    pub queues: BTreeMap<String, Queue>,
    pub tables: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    pub url: String,
    pub arn: String,
}

#[derive(Debug, Clone)]
pub struct Secret {
    pub name: String,
    pub arn: String,
}

impl Template {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let doc: Value = serde_norway::from_str(text).context("template.yaml is not valid YAML")?;
        let resources = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .context("template has no Resources")?
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
            .collect();
        Ok(Self {
            parameters: doc
                .get("Parameters")
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default(),
            globals: doc.get("Globals").cloned().unwrap_or(Value::Null),
            resources,
        })
    }

    /// Logical ids of every resource of a CloudFormation type.
    pub fn of_type(&self, kind: &str) -> Vec<&str> {
        self.resources
            .iter()
            .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// A resource's `Properties`.
    pub fn properties(&self, logical_id: &str) -> anyhow::Result<&Value> {
        self.resources
            .get(logical_id)
            .and_then(|r| r.get("Properties"))
            .with_context(|| format!("template has no resource {logical_id} with Properties"))
    }

    /// The HTTP routes (method, path) of a function's `HttpApi` events.
    pub fn http_routes(&self, function: &str) -> anyhow::Result<Vec<(String, String)>> {
        let events = self
            .properties(function)?
            .get("Events")
            .and_then(Value::as_mapping)
            .context("function has no Events")?;
        Ok(events
            .values()
            .filter(|e| e.get("Type").and_then(Value::as_str) == Some("HttpApi"))
            .filter_map(|e| {
                let p = e.get("Properties")?;
                Some((
                    p.get("Method")?.as_str()?.to_uppercase(),
                    p.get("Path")?.as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    /// A function's environment: the template's Globals merged with its own variables, resolved.
    pub fn function_env(
        &self,
        function: &str,
        provisioned: &Provisioned,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        let global = self
            .globals
            .get("Function")
            .and_then(|f| f.get("Environment"));
        let own = self.properties(function)?.get("Environment");
        for vars in [global, own].into_iter().flatten() {
            let Some(vars) = vars.get("Variables").and_then(Value::as_mapping) else {
                continue;
            };
            for (name, value) in vars {
                let name = name.as_str().context("variable names are strings")?;
                let value = self.resolve(value, provisioned)?;
                env.insert(name.to_owned(), scalar(&value)?);
            }
        }
        Ok(env)
    }

    /// Creates every queue, table and secret of the template in the AWS that `aws` points at,
    /// named as a stack called `stack_name` would name them. `secret_value` replaces the
    /// template's placeholder secret string.
    pub async fn provision(
        &self,
        aws: &aws_config::SdkConfig,
        stack_name: &str,
        secret_value: &str,
    ) -> anyhow::Result<Provisioned> {
        let mut out = Provisioned {
            stack_name: stack_name.to_owned(),
            ..Default::default()
        };
        let sqs = aws_sdk_sqs::Client::new(aws);
        let queue_ids = self.of_type("AWS::SQS::Queue");
        // Queues first without redrive, since a redrive names another queue's ARN.
        for id in &queue_ids {
            let props = self.properties(id)?;
            let name = scalar(&self.resolve(props.get("QueueName").context("QueueName")?, &out)?)?;
            let mut create = sqs.create_queue().queue_name(&name);
            for (attribute, value) in queue_attributes(props, |v| self.resolve(v, &out))? {
                if attribute != QueueAttributeName::RedrivePolicy {
                    create = create.attributes(attribute, value);
                }
            }
            let url = create
                .send()
                .await
                .with_context(|| format!("failed to create queue {name}"))?
                .queue_url
                .context("CreateQueue returned no URL")?;
            let arn = format!("arn:aws:sqs:{LOCAL_REGION}:{ACCOUNT_ID}:{name}");
            out.queues
                .insert((*id).to_owned(), Queue { name, url, arn });
        }
        for id in &queue_ids {
            let props = self.properties(id)?;
            for (attribute, value) in queue_attributes(props, |v| self.resolve(v, &out))? {
                if attribute == QueueAttributeName::RedrivePolicy {
                    sqs.set_queue_attributes()
                        .queue_url(&out.queues[*id].url)
                        .attributes(attribute, value)
                        .send()
                        .await
                        .with_context(|| format!("failed to set the redrive policy of {id}"))?;
                }
            }
        }

        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        for id in self.of_type("AWS::DynamoDB::Table") {
            let props = self.properties(id)?;
            let name = scalar(&self.resolve(props.get("TableName").context("TableName")?, &out)?)?;
            create_table(&dynamo, &name, props).await?;
            out.tables.insert(id.to_owned(), name);
        }

        let secrets = aws_sdk_secretsmanager::Client::new(aws);
        for id in self.of_type("AWS::SecretsManager::Secret") {
            let props = self.properties(id)?;
            let name = scalar(&self.resolve(props.get("Name").context("Name")?, &out)?)?;
            let created = secrets
                .create_secret()
                .name(&name)
                .secret_string(secret_value)
                .send()
                .await
                .with_context(|| format!("failed to create secret {name}"))?;
            let arn = created.arn.context("CreateSecret returned no ARN")?;
            out.secrets.insert(id.to_owned(), Secret { name, arn });
        }
        Ok(out)
    }

    /// Resolves the intrinsic functions this template uses against what was provisioned.
    pub fn resolve(&self, value: &Value, p: &Provisioned) -> anyhow::Result<Value> {
        match value {
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                self.intrinsic(tag.trim_start_matches('!'), &tagged.value, p)
            }
            Value::Mapping(map) if map.len() == 1 => {
                let (key, inner) = map.iter().next().expect("one entry");
                match key.as_str() {
                    Some(k @ ("Ref" | "Fn::GetAtt" | "Fn::Sub")) => {
                        self.intrinsic(k.trim_start_matches("Fn::"), inner, p)
                    }
                    _ => Ok(Value::Mapping(resolve_map(map, |v| self.resolve(v, p))?)),
                }
            }
            Value::Mapping(map) => Ok(Value::Mapping(resolve_map(map, |v| self.resolve(v, p))?)),
            Value::Sequence(items) => Ok(Value::Sequence(
                items
                    .iter()
                    .map(|v| self.resolve(v, p))
                    .collect::<anyhow::Result<_>>()?,
            )),
            other => Ok(other.clone()),
        }
    }

    fn intrinsic(&self, name: &str, arg: &Value, p: &Provisioned) -> anyhow::Result<Value> {
        match name {
            "Ref" => self.reference(arg.as_str().context("Ref takes a name")?, p),
            "GetAtt" => {
                let (id, attribute) = match arg {
                    Value::String(s) => s.split_once('.').context("GetAtt takes Id.Attribute")?,
                    Value::Sequence(v) if v.len() == 2 => (
                        v[0].as_str().context("GetAtt id")?,
                        v[1].as_str().context("GetAtt attribute")?,
                    ),
                    _ => bail!("GetAtt takes Id.Attribute"),
                };
                self.attribute(id, attribute, p)
            }
            "Sub" => {
                let text = arg
                    .as_str()
                    .context("only the one-argument form of Sub is supported")?;
                let mut out = String::new();
                let mut rest = text;
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..].find('}').context("unclosed ${ in Sub")? + start;
                    let name = &rest[start + 2..end];
                    let value = match name.split_once('.') {
                        Some((id, attribute)) => self.attribute(id, attribute, p)?,
                        None => self.reference(name, p)?,
                    };
                    out.push_str(&scalar(&value)?);
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                Ok(Value::String(out))
            }
            other => bail!("intrinsic {other} is not supported by the local stack"),
        }
    }

    fn reference(&self, name: &str, p: &Provisioned) -> anyhow::Result<Value> {
        let s = |v: &str| Ok(Value::String(v.to_owned()));
        match name {
            "AWS::StackName" => s(&p.stack_name),
            "AWS::Region" => s(LOCAL_REGION),
            "AWS::AccountId" => s(ACCOUNT_ID),
            "AWS::URLSuffix" => s("amazonaws.com"),
            _ => {
                if let Some(q) = p.queues.get(name) {
                    return s(&q.url);
                }
                if let Some(t) = p.tables.get(name) {
                    return s(t);
                }
                if let Some(secret) = p.secrets.get(name) {
                    return s(&secret.arn);
                }
                let parameter = self.parameters.get(name).with_context(|| {
                    format!("Ref {name}: not a parameter or provisioned resource")
                })?;
                Ok(parameter
                    .get("Default")
                    .cloned()
                    .unwrap_or(Value::String(String::new())))
            }
        }
    }

    fn attribute(&self, id: &str, attribute: &str, p: &Provisioned) -> anyhow::Result<Value> {
        let queue = p.queues.get(id);
        let value = match (queue, attribute) {
            (Some(q), "Arn") => q.arn.clone(),
            (Some(q), "QueueName") => q.name.clone(),
            (Some(q), "QueueUrl") => q.url.clone(),
            _ => match (p.tables.get(id), attribute) {
                (Some(t), "Arn") => {
                    format!("arn:aws:dynamodb:{LOCAL_REGION}:{ACCOUNT_ID}:table/{t}")
                }
                _ => bail!("GetAtt {id}.{attribute}: not provisioned (yet)"),
            },
        };
        Ok(Value::String(value))
    }
}

fn resolve_map(
    map: &serde_norway::Mapping,
    mut f: impl FnMut(&Value) -> anyhow::Result<Value>,
) -> anyhow::Result<serde_norway::Mapping> {
    map.iter().map(|(k, v)| Ok((k.clone(), f(v)?))).collect()
}

/// A scalar template value as the string AWS APIs take.
fn scalar(value: &Value) -> anyhow::Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(anyhow!("expected a scalar, found {other:?}")),
    }
}

/// The SQS attributes a queue's CloudFormation properties stand for. The property names are
/// SQS's attribute names; `RedrivePolicy` is an object in the template and JSON in the API.
pub fn queue_attributes(
    props: &Value,
    resolve: impl Fn(&Value) -> anyhow::Result<Value>,
) -> anyhow::Result<Vec<(QueueAttributeName, String)>> {
    let mut out = Vec::new();
    for (key, value) in props.as_mapping().context("queue Properties")? {
        let key = key.as_str().context("property names are strings")?;
        if matches!(key, "QueueName" | "Tags") {
            continue;
        }
        let value = resolve(value)?;
        let text = if key == "RedrivePolicy" {
            let json: serde_json::Value = serde_norway::from_value(value)?;
            json.to_string()
        } else {
            scalar(&value)?
        };
        if !QueueAttributeName::values().contains(&key) {
            bail!("queue property {key} has no SQS attribute");
        }
        out.push((QueueAttributeName::from(key), text));
    }
    Ok(out)
}

async fn create_table(
    dynamo: &aws_sdk_dynamodb::Client,
    name: &str,
    props: &Value,
) -> anyhow::Result<()> {
    let key_schema = |v: &Value| -> anyhow::Result<Vec<KeySchemaElement>> {
        v.as_sequence()
            .context("KeySchema")?
            .iter()
            .map(|k| {
                Ok(KeySchemaElement::builder()
                    .attribute_name(str_of(k, "AttributeName")?)
                    .key_type(KeyType::from(str_of(k, "KeyType")?))
                    .build()?)
            })
            .collect()
    };
    let mut create = dynamo
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(str_of(props, "BillingMode")?))
        .set_key_schema(Some(key_schema(
            props.get("KeySchema").context("KeySchema")?,
        )?));
    for attribute in props
        .get("AttributeDefinitions")
        .and_then(Value::as_sequence)
        .context("AttributeDefinitions")?
    {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(str_of(attribute, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(str_of(
                    attribute,
                    "AttributeType",
                )?))
                .build()?,
        );
    }
    for index in props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let projection = index.get("Projection");
        let projection_type = projection
            .and_then(|p| p.get("ProjectionType"))
            .and_then(Value::as_str)
            .unwrap_or("ALL");
        let non_key: Option<Vec<String>> = projection
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_sequence)
            .map(|v| {
                v.iter()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect()
            });
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(str_of(index, "IndexName")?)
                .set_key_schema(Some(key_schema(
                    index.get("KeySchema").context("KeySchema")?,
                )?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(projection_type))
                        .set_non_key_attributes(non_key)
                        .build(),
                )
                .build()?,
        );
    }
    create
        .send()
        .await
        .with_context(|| format!("failed to create table {name}"))?;

    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        dynamo
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(str_of(ttl, "AttributeName")?)
                    .enabled(ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(false))
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("failed to enable TTL on {name}"))?;
    }
    Ok(())
}

fn str_of<'a>(value: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("{key} must be a string"))
}

/// Every function's environment, keyed by logical id, as `sam local --env-vars` reads it.
pub fn sam_env_json(
    template: &Template,
    provisioned: &Provisioned,
    extra: &[(String, String)],
) -> anyhow::Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for function in template.of_type("AWS::Serverless::Function") {
        let mut env: HashMap<String, String> = template
            .function_env(function, provisioned)?
            .into_iter()
            .collect();
        env.extend(extra.iter().cloned());
        out.insert(function.to_owned(), serde_json::to_value(env)?);
    }
    Ok(serde_json::Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Stage:
    Type: String
    Default: dev
Globals:
  Function:
    Environment:
      Variables:
        STAGE: !Ref Stage
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-q.fifo"
      FifoQueue: true
      VisibilityTimeout: 30
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt D.Arn
        maxReceiveCount: 5
  D:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: d.fifo
  F:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          QUEUE: !Ref Q
          LONG_ARN: { "Fn::GetAtt": ["D", "Arn"] }
          BOTH: !Sub "${Stage}/${Q.QueueName}"
          LIMIT: 42
"#;

    fn provisioned() -> Provisioned {
        let queue = |name: &str| Queue {
            name: name.into(),
            url: format!("http://moto/{name}"),
            arn: format!("arn:aws:sqs:us-east-1:123456789012:{name}"),
        };
        Provisioned {
            stack_name: "s".into(),
            queues: [
                ("Q".into(), queue("s-q.fifo")),
                ("D".into(), queue("d.fifo")),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn function_environments_merge_globals_and_resolve_every_intrinsic_form() {
        let template = Template::parse(TEMPLATE).unwrap();
        let env = template.function_env("F", &provisioned()).unwrap();
        assert_eq!(env["STAGE"], "dev");
        assert_eq!(env["QUEUE"], "http://moto/s-q.fifo");
        assert_eq!(env["LONG_ARN"], "arn:aws:sqs:us-east-1:123456789012:d.fifo");
        assert_eq!(env["BOTH"], "dev/s-q.fifo");
        assert_eq!(env["LIMIT"], "42");
    }

    #[test]
    fn queue_properties_become_sqs_attributes_with_the_redrive_policy_as_json() {
        let template = Template::parse(TEMPLATE).unwrap();
        let p = provisioned();
        let attributes = queue_attributes(template.properties("Q").unwrap(), |v| {
            template.resolve(v, &p)
        })
        .unwrap();
        let get = |name: QueueAttributeName| {
            attributes
                .iter()
                .find(|(a, _)| *a == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get(QueueAttributeName::FifoQueue), "true");
        assert_eq!(get(QueueAttributeName::VisibilityTimeout), "30");
        let redrive: serde_json::Value =
            serde_json::from_str(&get(QueueAttributeName::RedrivePolicy)).unwrap();
        assert_eq!(redrive["maxReceiveCount"], 5);
        assert_eq!(
            redrive["deadLetterTargetArn"],
            "arn:aws:sqs:us-east-1:123456789012:d.fifo"
        );
    }

    #[test]
    fn a_queue_property_sqs_does_not_know_is_an_error_not_silently_dropped() {
        let template = Template::parse(
            "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: q\n      Bogus: 1\n",
        )
        .unwrap();
        let err =
            queue_attributes(template.properties("Q").unwrap(), |v| Ok(v.clone())).unwrap_err();
        assert!(err.to_string().contains("Bogus"), "{err}");
    }

    #[test]
    fn an_unsupported_intrinsic_is_an_error() {
        let template = Template::parse(TEMPLATE).unwrap();
        let value: Value = serde_norway::from_str("!Join [\"-\", [a, b]]").unwrap();
        assert!(template.resolve(&value, &provisioned()).is_err());
    }

    #[test]
    fn the_project_template_declares_the_resources_the_local_stack_creates() {
        let template = Template::load(&crate::paths::template()).unwrap();
        assert_eq!(template.of_type("AWS::SQS::Queue").len(), 2);
        assert_eq!(template.of_type("AWS::DynamoDB::Table"), ["AppTable"]);
        assert_eq!(
            template.of_type("AWS::SecretsManager::Secret"),
            ["AppSecret"]
        );
    }
}
