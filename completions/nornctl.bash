# bash completion for nornctl                              -*- shell-script -*-
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Commands, options, app names (from `nornctl list-app-names`, asked of the
# same nornd the command line points at: --user, -H HOST) and recent
# deployment ids (from `nornctl history`).

__nornctl_bus_args() {
    # The options of the current command line that choose the nornd.
    local i w
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
            --user|--system) printf '%s\n' "$w" ;;
            -H|--host) [[ -n ${COMP_WORDS[i+1]-} ]] && printf '%s\n' "$w" "${COMP_WORDS[i+1]}" ;;
            --host=*) printf '%s\n' "$w" ;;
        esac
    done
}

__nornctl() {
    local -a bus_args
    mapfile -t bus_args < <(__nornctl_bus_args)
    # Never prompt or hang the shell: a short timeout, no stdin, and (setsid)
    # no controlling terminal, so ssh behind -H cannot ask for a password.
    local -a detach=()
    command -v setsid >/dev/null && detach=(setsid -w)
    timeout 5 "${detach[@]}" nornctl "${bus_args[@]}" --no-pager "$@" </dev/null 2>/dev/null
}

_nornctl() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local commands="apps status history show logs snapshots validate health version deploy rollback restore cancel"
    local global_opts="--help --version --system --user --host -H --json --no-pager"
    local i verb="" n_args=0 first_arg=""

    COMPREPLY=()

    # Values of options.
    case $prev in
        -H|--host)
            local hosts
            hosts=$(compgen -A hostname -- "$cur" 2>/dev/null)
            COMPREPLY=($(compgen -W "$hosts" -- "$cur"))
            return 0
            ;;
        --status)
            COMPREPLY=($(compgen -W "queued building testing snapshotting migrating deploying deployed failed rolled_back" -- "$cur"))
            return 0
            ;;
        --to|-n|--limit)
            return 0
            ;;
    esac

    # The command word and how many arguments it already has.
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            -H|--host|--status|--to|-n|--limit) ((i++)); continue ;;
            -*) continue ;;
        esac
        if [[ -z $verb ]]; then
            verb=${COMP_WORDS[i]}
        else
            ((n_args++ == 0)) && first_arg=${COMP_WORDS[i]}
        fi
    done

    if [[ -z $verb ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return 0
    fi

    if [[ $cur == -* ]]; then
        local opts="--json --user --system --host --no-pager"
        case $verb in
            deploy|restore) opts="$opts --no-follow" ;;
            rollback) opts="$opts --no-follow --to --restore-db" ;;
            history) opts="$opts --status -n --limit" ;;
            logs) opts="$opts -f --follow" ;;
        esac
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return 0
    fi

    case $verb in
        status|history|validate|snapshots|rollback|deploy|restore)
            # The first argument is an app.
            if ((n_args == 0)); then
                COMPREPLY=($(compgen -W "$(__nornctl list-app-names)" -- "$cur"))
            elif [[ $verb == restore && $n_args == 1 ]]; then
                # The SNAPSHOT column (second to last) of `nornctl snapshots APP`.
                COMPREPLY=($(compgen -W "$(__nornctl snapshots -- "$first_arg" | awk 'NR > 1 { print $(NF-1) }')" -- "$cur"))
            fi
            ;;
        show|logs|cancel)
            if ((n_args == 0)); then
                COMPREPLY=($(compgen -W "$(__nornctl history -n 20 | awk 'NR > 1 { print $1 }')" -- "$cur"))
            fi
            ;;
    esac
    return 0
}

complete -F _nornctl nornctl
