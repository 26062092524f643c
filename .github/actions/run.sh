#!/usr/bin/env bash
# Runs meltano-cloud validate, plan or apply for the action and sets its outputs.
set -euo pipefail

# Empty inputs mean "not given": leave the variables unset so settings and defaults apply.
for var in MELTANO_CLOUD_API_URL MELTANO_CLOUD_TOKEN MELTANO_CLOUD_ORG; do
  if [ -z "${!var:-}" ]; then unset "$var"; fi
done
if [ -n "${INPUT_SOPS_AGE_KEY:-}" ]; then
  # Kept in the environment only: sops reads SOPS_AGE_KEY, no key file is written.
  export SOPS_AGE_KEY="$INPUT_SOPS_AGE_KEY"
fi
unset INPUT_SOPS_AGE_KEY

read -r -a extra <<< "${EXTRA_ARGS:-}"
global=(--file "$CLOUD_FILE" --color always)

case "$COMMAND" in
  validate)
    meltano-cloud "${global[@]}" validate ${extra[@]+"${extra[@]}"}
    ;;
  plan)
    plan_file="${PLAN_FILE:-${RUNNER_TEMP:-/tmp}/meltano-cloud.plan.json}"
    summary_file="${RUNNER_TEMP:-/tmp}/meltano-cloud.plan.md"
    set +e
    meltano-cloud "${global[@]}" plan --detailed-exitcode -o "$plan_file" \
      --format markdown ${extra[@]+"${extra[@]}"} > "$summary_file"
    code=$?
    set -e
    cat "$summary_file"
    case "$code" in
      0) has_changes=false ;;
      2) has_changes=true ;;
      *) exit "$code" ;;
    esac
    {
      echo "has-changes=$has_changes"
      echo "plan-file=$plan_file"
      # The delimiter cannot occur in the plan, which never holds this random string.
      delimiter="MELTANO_CLOUD_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
      echo "summary<<$delimiter"
      cat "$summary_file"
      echo "$delimiter"
    } >> "$GITHUB_OUTPUT"
    ;;
  apply)
    if [ -n "${PLAN_FILE:-}" ]; then
      meltano-cloud "${global[@]}" apply --auto-approve ${extra[@]+"${extra[@]}"} "$PLAN_FILE"
    else
      meltano-cloud "${global[@]}" apply --auto-approve ${extra[@]+"${extra[@]}"}
    fi
    ;;
  *)
    echo "::error title=meltano-cloud::unknown command '$COMMAND': use validate, plan or apply"
    exit 1
    ;;
esac
