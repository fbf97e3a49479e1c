#!/usr/bin/env bash
# A reidkit pipeline for cron: data -> train -> extract -> evaluate --json.
#
#   */30 * * * *  WORKDIR=/srv/reid /path/to/examples/cron_pipeline.sh
#
# Every stage is rerunnable: a second run with the same settings does no work (each stage
# says it is up to date) and rewrites only the results file. Settings come from the
# environment (defaults in brackets):
#
#   WORKDIR   where everything lives                      [./reid-cron]
#   DATA      data root (--root)                          [$WORKDIR/data]
#   DATASET   synthreid (rendered) or a dataset to install with `datasets download`
#                                                         [synthreid]
#   PRESET    synthreid preset                            [tiny]
#   ARCHIVE   for a downloaded dataset: install from this archive (--archive) []
#   RUN       run directory (not $WORKDIR/cron: reidkit locks it with $WORKDIR/.cron.lock,
#             the script's own lock)                      [$WORKDIR/runs/cron]
#   FEATS     feature directory                           [$WORKDIR/feats]
#   RESULTS   evaluate --json output                      [$WORKDIR/results.json]
#   LOG       log file (appended)                         [$WORKDIR/cron.log]
#   MODEL     model name                                  [osnet_x0_25]
#   PRETRAINED  starting weights: imagenet, none or a file  [none]
#   EPOCHS    training epochs (raise it and the next run trains further) [2]
#   HEIGHT, WIDTH  image size                             [64, 32]
#   BATCH     batch size                                  [16]
#   DEVICE    auto, cpu or cuda                           [auto]
#   TRAIN_OVERRIDES  more `key=value` settings for a new run, space-separated []
#   REIDKIT   the reidkit command                         [reidkit on PATH]
#
# Exit status: 0 when every stage succeeded, 75 when another run holds the lock, otherwise
# the exit status of the stage that failed (see docs/cli.md: 1 runtime, 2 usage, 75 locked,
# 130 interrupted). Each stage's output is appended to $LOG after a timestamped line.
set -euo pipefail

WORKDIR=${WORKDIR:-./reid-cron}
DATA=${DATA:-$WORKDIR/data}
DATASET=${DATASET:-synthreid}
PRESET=${PRESET:-tiny}
ARCHIVE=${ARCHIVE:-}
RUN=${RUN:-$WORKDIR/runs/cron}
FEATS=${FEATS:-$WORKDIR/feats}
RESULTS=${RESULTS:-$WORKDIR/results.json}
LOG=${LOG:-$WORKDIR/cron.log}
MODEL=${MODEL:-osnet_x0_25}
PRETRAINED=${PRETRAINED:-none}  # OSNet's ImageNet file is torchreid's: none on a new machine
EPOCHS=${EPOCHS:-2}
HEIGHT=${HEIGHT:-64}
WIDTH=${WIDTH:-32}
BATCH=${BATCH:-16}
DEVICE=${DEVICE:-auto}
TRAIN_OVERRIDES=${TRAIN_OVERRIDES:-}
REIDKIT=${REIDKIT:-reidkit}
# Without a terminal, reidkit's reports for people wrap at 80 columns; keep each on one
# line in the log, so that `grep 'up to date' "$LOG"` finds them.
export COLUMNS=${COLUMNS:-1000}

mkdir -p "$WORKDIR" "$(dirname "$LOG")" "$(dirname "$RESULTS")"
cleanup=()  # removed on exit
trap 'rm -rf ${cleanup[@]+"${cleanup[@]}"}' EXIT

# One run at a time: cron starts the next one whether or not the last has finished.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$WORKDIR/.cron.lock"
    flock -n 9 || { echo "another run is active" >&2; exit 75; }
else  # no flock(1): an atomic mkdir, with the holder's pid to detect a stale lock
    lockdir="$WORKDIR/.cron.lock.d"
    if ! mkdir "$lockdir" 2>/dev/null; then
        holder=$(cat "$lockdir/pid" 2>/dev/null || true)
        if [[ -n $holder ]] && kill -0 "$holder" 2>/dev/null; then
            echo "another run is active" >&2
            exit 75
        fi
        rm -rf "$lockdir" && mkdir "$lockdir"
    fi
    echo $$ >"$lockdir/pid"
    cleanup+=("$lockdir")
fi

log() { printf '[%s] %s\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$*" >>"$LOG"; }

# stage NAME COMMAND...: run COMMAND with its stderr appended to the log, and its stdout
# too unless STAGE_OUT names a file for it; stop the script with the command's exit
# status if it fails.
stage() {
    local name=$1 rc=0
    shift
    log "stage $name: $*"
    if [[ -n ${STAGE_OUT:-} ]]; then
        "$@" >"$STAGE_OUT" 2>>"$LOG" || rc=$?
    else
        "$@" >>"$LOG" 2>&1 || rc=$?
    fi
    if ((rc != 0)); then
        log "stage $name failed (exit $rc)"
        echo "cron_pipeline: stage $name failed (exit $rc); see $LOG" >&2
        exit "$rc"
    fi
}

start=$SECONDS
log "pipeline start (pid $$, workdir $WORKDIR)"

# 1. Data: render the synthetic dataset, or install a real one.
if [[ $DATASET == synthreid ]]; then
    stage data "$REIDKIT" datasets synth --root "$DATA" --preset "$PRESET"
else
    stage data "$REIDKIT" datasets download "$DATASET" --root "$DATA" ${ARCHIVE:+--archive "$ARCHIVE"}
fi

# 2. Train. `reidkit train` refuses an existing run directory (exit 2), so an existing run
# is resumed: up to EPOCHS, which does nothing when the run has finished them.
if [[ -f $RUN/weights/last.pt ]]; then
    stage train "$REIDKIT" resume "$RUN" --max-epoch "$EPOCHS" --device "$DEVICE"
else
    new_run=()
    # A run killed before its first checkpoint has config.yaml but no weights: start over.
    [[ -f $RUN/config.yaml ]] && new_run=(--exist-ok)
    # shellcheck disable=SC2086  # TRAIN_OVERRIDES is a space-separated list on purpose
    stage train "$REIDKIT" train --dataset "$DATASET" --root "$DATA" --model "$MODEL" \
        --epochs "$EPOCHS" --batch-size "$BATCH" --run "$RUN" ${new_run[@]+"${new_run[@]}"} \
        --pretrained "$PRETRAINED" \
        "data.height=$HEIGHT" "data.width=$WIDTH" data.num_instances=4 \
        optim.lr=0.003 schedule.name=cosine schedule.warmup_epochs=1 loss.triplet=0 \
        "eval.every=$EPOCHS" "train.device=$DEVICE" $TRAIN_OVERRIDES
fi

# 3. Extract query and gallery features of the best checkpoint (last.pt without evaluation).
checkpoint=$RUN/weights/best.pt
[[ -f $checkpoint ]] || checkpoint=$RUN/weights/last.pt
stage extract "$REIDKIT" extract "$checkpoint" --dataset "$DATASET" --root "$DATA" \
    --out "$FEATS" --device "$DEVICE"

# 4. Evaluate; the JSON goes to a temporary name first, so RESULTS is always whole.
tmp=$RESULTS.$$.tmp
cleanup+=("$tmp")
STAGE_OUT=$tmp stage evaluate "$REIDKIT" evaluate "$FEATS/$DATASET-query.h5" \
    "$FEATS/$DATASET-gallery.h5" --device "$DEVICE" --json
mv -f "$tmp" "$RESULTS"
log "pipeline done in $((SECONDS - start)) s; results in $RESULTS"
