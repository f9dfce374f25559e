//! A workspace's AI settings as the dashboard reads and replaces them: the same item the message
//! processor reads (`AiConfig`), behind a validated API shape.

use std::future::Future;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::DashboardError;
use crate::conversations::model::AiConfig;
use crate::conversations::store::StoreResult;
use crate::ids::WorkspaceId;

pub const MAX_SYSTEM_PROMPT_CHARS: usize = 8000;
pub const MAX_MODEL_CHARS: usize = 100;
pub const MAX_HISTORY_LENGTH: i64 = 50;
pub const MAX_TOKENS: i64 = 4096;

/// A workspace's AI settings. `PUT` replaces all of them, so every field is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiSettings {
    /// Whether the AI answers customers at all.
    pub enabled: bool,
    /// The instructions every AI reply starts from.
    #[schema(min_length = 1, max_length = 8000)]
    pub system_prompt: String,
    pub providers: Providers,
    /// The A/B split: the percentage of contacts routed to Grok; the rest go to SEA-LION. A
    /// contact always stays with the same provider.
    #[schema(minimum = 0, maximum = 100)]
    pub grok_weight: i64,
    /// How many earlier messages of the conversation go into the AI's context.
    #[schema(minimum = 0, maximum = 50)]
    pub history_length: i64,
    /// Sampling temperature.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: f64,
    /// The longest reply, in tokens.
    #[schema(minimum = 1, maximum = 4096)]
    pub max_tokens: i64,
    /// A person answering from the WhatsApp Business app pauses the bot in that conversation.
    pub pause_on_human_reply: bool,
}

/// The model of each provider the A/B router chooses between.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    pub grok: ProviderModel,
    pub sealion: ProviderModel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderModel {
    /// The model name; `null` (or absent) uses the provider's default model.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub model: Option<String>,
}

impl From<AiConfig> for AiSettings {
    fn from(c: AiConfig) -> Self {
        Self {
            enabled: c.enabled,
            system_prompt: c.system_prompt,
            providers: Providers {
                grok: ProviderModel {
                    model: c.grok_model,
                },
                sealion: ProviderModel {
                    model: c.sealion_model,
                },
            },
            grok_weight: c.grok_weight.into(),
            history_length: c.history_length.into(),
            // Through its shortest text, so 0.4 reads back as 0.4 and not 0.4000000059604645.
            temperature: c.temperature.to_string().parse().unwrap_or(0.0),
            max_tokens: c.max_tokens.into(),
            pause_on_human_reply: c.pause_on_human_reply,
        }
    }
}

impl AiSettings {
    /// The settings as the processor reads them, or the first field that is out of range.
    pub fn validate(self) -> Result<AiConfig, DashboardError> {
        let prompt = self.system_prompt.trim();
        if prompt.is_empty() {
            return Err(DashboardError::invalid("systemPrompt", "must not be empty"));
        }
        if prompt.chars().count() > MAX_SYSTEM_PROMPT_CHARS {
            return Err(DashboardError::invalid(
                "systemPrompt",
                format!("must be at most {MAX_SYSTEM_PROMPT_CHARS} characters"),
            ));
        }
        let grok_model = model("providers.grok.model", self.providers.grok.model)?;
        let sealion_model = model("providers.sealion.model", self.providers.sealion.model)?;
        let grok_weight = within("grokWeight", self.grok_weight, 0, 100)?;
        let history_length = within("historyLength", self.history_length, 0, MAX_HISTORY_LENGTH)?;
        let max_tokens = within("maxTokens", self.max_tokens, 1, MAX_TOKENS)?;
        if !(0.0..=2.0).contains(&self.temperature) {
            return Err(DashboardError::invalid(
                "temperature",
                "must be between 0 and 2",
            ));
        }
        Ok(AiConfig {
            enabled: self.enabled,
            system_prompt: prompt.to_owned(),
            grok_model,
            sealion_model,
            grok_weight: grok_weight as u8,
            history_length: history_length as u32,
            temperature: self.temperature as f32,
            max_tokens: max_tokens as u32,
            pause_on_human_reply: self.pause_on_human_reply,
        })
    }
}

fn within(field: &str, value: i64, min: i64, max: i64) -> Result<i64, DashboardError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(DashboardError::invalid(
            field,
            format!("must be between {min} and {max}"),
        ))
    }
}

fn model(field: &str, value: Option<String>) -> Result<Option<String>, DashboardError> {
    let Some(name) = value else { return Ok(None) };
    if name.is_empty() || name.chars().count() > MAX_MODEL_CHARS {
        return Err(DashboardError::invalid(
            field,
            format!(
                "must be 1 to {MAX_MODEL_CHARS} characters, or null for the provider's default"
            ),
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DashboardError::invalid(
            field,
            "must not contain spaces or control characters",
        ));
    }
    Ok(Some(name))
}

/// Port: the workspace's AI config item, the one the processor reads through `TenantStore`.
pub trait AiConfigStore: Send + Sync + 'static {
    /// The stored settings, or the defaults (AI off) when the workspace has none.
    fn read_ai_config(
        &self,
        workspace_id: &WorkspaceId,
    ) -> impl Future<Output = StoreResult<AiConfig>> + Send;
    fn write_ai_config(
        &self,
        workspace_id: &WorkspaceId,
        config: &AiConfig,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// The caller's AI settings.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn get<D: AiConfigStore>(
    store: &D,
    workspace_id: &WorkspaceId,
) -> Result<AiSettings, DashboardError> {
    Ok(store.read_ai_config(workspace_id).await?.into())
}

/// Replaces the caller's AI settings and returns them as stored.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn put<D: AiConfigStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    settings: AiSettings,
) -> Result<AiSettings, DashboardError> {
    let config = settings.validate()?;
    store.write_ai_config(workspace_id, &config).await?;
    tracing::info!(
        enabled = config.enabled,
        grok_weight = config.grok_weight,
        "AI settings replaced"
    );
    Ok(config.into())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    fn settings() -> AiSettings {
        AiConfig {
            enabled: true,
            grok_model: Some("grok-3-mini".into()),
            ..AiConfig::default()
        }
        .into()
    }

    fn field_of(result: Result<AiConfig, DashboardError>) -> String {
        match result {
            Err(DashboardError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn valid_settings_become_the_config_the_processor_reads() {
        let config = settings().validate().unwrap();
        assert_eq!(
            config,
            AiConfig {
                enabled: true,
                grok_model: Some("grok-3-mini".into()),
                ..AiConfig::default()
            }
        );
    }

    #[test]
    fn each_out_of_range_value_is_refused_naming_its_field() {
        type Change = Box<dyn Fn(&mut AiSettings)>;
        let cases: Vec<(&str, Change)> = vec![
            ("grokWeight", Box::new(|s| s.grok_weight = 101)),
            ("grokWeight", Box::new(|s| s.grok_weight = -1)),
            ("historyLength", Box::new(|s| s.history_length = 51)),
            ("maxTokens", Box::new(|s| s.max_tokens = 0)),
            ("temperature", Box::new(|s| s.temperature = 2.5)),
            ("temperature", Box::new(|s| s.temperature = f64::NAN)),
            ("systemPrompt", Box::new(|s| s.system_prompt = "   ".into())),
            (
                "systemPrompt",
                Box::new(|s| s.system_prompt = "x".repeat(MAX_SYSTEM_PROMPT_CHARS + 1)),
            ),
            (
                "providers.grok.model",
                Box::new(|s| s.providers.grok.model = Some(String::new())),
            ),
            (
                "providers.sealion.model",
                Box::new(|s| s.providers.sealion.model = Some("two words".into())),
            ),
        ];
        for (field, change) in cases {
            let mut s = settings();
            change(&mut s);
            assert_eq!(field_of(s.validate()), field);
        }
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        for (weight, history, tokens, temperature) in [(0, 0, 1, 0.0), (100, 50, 4096, 2.0)] {
            let s = AiSettings {
                grok_weight: weight,
                history_length: history,
                max_tokens: tokens,
                temperature,
                ..settings()
            };
            assert!(
                s.validate().is_ok(),
                "{weight} {history} {tokens} {temperature}"
            );
        }
    }

    #[test]
    fn the_api_shape_is_camel_case_and_refuses_unknown_fields() {
        let json = serde_json::to_value(settings()).unwrap();
        assert_eq!(json["grokWeight"], 50);
        assert_eq!(json["providers"]["grok"]["model"], "grok-3-mini");
        let mut with_extra = json.clone();
        with_extra["grok_weight"] = 10.into();
        assert!(serde_json::from_value::<AiSettings>(with_extra).is_err());
    }

    #[derive(Default)]
    struct Memory(Mutex<HashMap<WorkspaceId, AiConfig>>);

    impl AiConfigStore for Memory {
        async fn read_ai_config(&self, ws: &WorkspaceId) -> StoreResult<AiConfig> {
            Ok(self.0.lock().unwrap().get(ws).cloned().unwrap_or_default())
        }
        async fn write_ai_config(&self, ws: &WorkspaceId, c: &AiConfig) -> StoreResult<()> {
            self.0.lock().unwrap().insert(ws.clone(), c.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn invalid_settings_are_never_written() {
        let store = Memory::default();
        let ws = WorkspaceId::parse("ws-a").unwrap();
        let bad = AiSettings {
            grok_weight: 300,
            ..settings()
        };
        assert!(put(&store, &ws, bad).await.is_err());
        assert!(store.0.lock().unwrap().is_empty());
        assert_eq!(get(&store, &ws).await.unwrap(), AiConfig::default().into());
    }

    #[tokio::test]
    async fn put_returns_the_settings_as_stored_with_the_prompt_trimmed() {
        let store = Memory::default();
        let ws = WorkspaceId::parse("ws-a").unwrap();
        let stored = put(
            &store,
            &ws,
            AiSettings {
                system_prompt: "  Be brief.  ".into(),
                ..settings()
            },
        )
        .await
        .unwrap();
        assert_eq!(stored.system_prompt, "Be brief.");
        assert_eq!(get(&store, &ws).await.unwrap(), stored);
    }
}
