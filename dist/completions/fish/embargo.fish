# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_embargo_global_optspecs
    string join \n c/config= log-level= h/help V/version
end

function __fish_embargo_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_embargo_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_embargo_using_subcommand
    set -l cmd (__fish_embargo_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c embargo -n "__fish_embargo_needs_command" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_needs_command" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_needs_command" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_needs_command" -s V -l version -d 'Print version'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "run" -d 'Serve DNS until SIGINT or SIGTERM; SIGHUP reloads the lists'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "check" -d 'Say whether each name is blocked, by which list and entry, or allowed'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "lists" -d 'Show every list: source, format, entries, duplicates, bad lines'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "history" -d 'When a name (or the list entry covering it) entered and left each list, and in which version; with --list, that list\'s changes'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "validate" -d 'Load the config and every list and report every problem (exit 1 if any is fatal)'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "reload" -d 'Tell the running server (found by its pid file in the state directory) to reload'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "fetch" -d 'Download remote lists now into the state directory, then tell the running server to reload. --force skips the conditional GET and the max_shrink check (an operator\'s explicit decision)'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "hits" -d 'Show the running server\'s hit report: for each list, the clients that asked for its names, most recent first (read from the state directory, where the server saves it within 5 seconds of a change and at shutdown)'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "log" -d 'Search the query log, rotated files included: what a client asked, what a list blocked, who asked for a name; the filters combine'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "completions" -d 'Print the completion script for a shell, e.g. `embargo completions bash > /etc/bash_completion.d/embargo`. Reads no config'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "man" -d 'Print a man page (roff): embargo(8) unless named, e.g. `embargo man embargo.toml | man -l -`. The Debian package installs them all. Reads no config'
complete -c embargo -n "__fish_embargo_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c embargo -n "__fish_embargo_using_subcommand run" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand run" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand run" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand check" -l client -d 'Say first whether this client address would be answered at all ([access] and [rate_limit]); a refused client gets no name. With [[groups]], say its group and answer each name for that group' -r
complete -c embargo -n "__fish_embargo_using_subcommand check" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand check" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand check" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand lists" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand lists" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand lists" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand history" -l list -d 'Only this list; without a name, every change it recorded' -r
complete -c embargo -n "__fish_embargo_using_subcommand history" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand history" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand history" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand validate" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand validate" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand validate" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand reload" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand reload" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand reload" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand fetch" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand fetch" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand fetch" -l force -d 'Accept a new version even if it shrinks the list more than max_shrink'
complete -c embargo -n "__fish_embargo_using_subcommand fetch" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand hits" -l list -d 'Only this list' -r
complete -c embargo -n "__fish_embargo_using_subcommand hits" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand hits" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand hits" -l json -d 'Print the report as JSON'
complete -c embargo -n "__fish_embargo_using_subcommand hits" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand log" -l client -d 'Only this client: an address, a network (10.1.2.0/24) or, with [log] client_ip = "hash", the hash the log shows' -r
complete -c embargo -n "__fish_embargo_using_subcommand log" -l list -d 'Only the queries this list blocked' -r
complete -c embargo -n "__fish_embargo_using_subcommand log" -l name -d 'Only this name and the names under it (case and a trailing dot do not count)' -r
complete -c embargo -n "__fish_embargo_using_subcommand log" -l since -d 'From this time on: RFC 3339 (2026-11-29T21:30:00Z, or with an offset) or a time ago (1h, 30m, 2days)' -r
complete -c embargo -n "__fish_embargo_using_subcommand log" -l until -d 'Before this time (the same forms)' -r
complete -c embargo -n "__fish_embargo_using_subcommand log" -l limit -d 'Only the newest N records (default: every one)' -r
complete -c embargo -n "__fish_embargo_using_subcommand log" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand log" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand log" -l json -d 'One JSON record per line, as the log\'s JSON form (whatever [log] format the files were written in)'
complete -c embargo -n "__fish_embargo_using_subcommand log" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand completions" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand completions" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand completions" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand man" -s c -l config -d 'Configuration file (TOML)' -r -F
complete -c embargo -n "__fish_embargo_using_subcommand man" -l log-level -d 'Log level (error, warn, info, debug, trace) or a full tracing filter such as "info,embargo::reload=warn"; overrides RUST_LOG. (Queries go to the query log, `[log]` in the config, not here.)' -r
complete -c embargo -n "__fish_embargo_using_subcommand man" -s h -l help -d 'Print help'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "run" -d 'Serve DNS until SIGINT or SIGTERM; SIGHUP reloads the lists'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "check" -d 'Say whether each name is blocked, by which list and entry, or allowed'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "lists" -d 'Show every list: source, format, entries, duplicates, bad lines'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "history" -d 'When a name (or the list entry covering it) entered and left each list, and in which version; with --list, that list\'s changes'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "validate" -d 'Load the config and every list and report every problem (exit 1 if any is fatal)'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "reload" -d 'Tell the running server (found by its pid file in the state directory) to reload'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "fetch" -d 'Download remote lists now into the state directory, then tell the running server to reload. --force skips the conditional GET and the max_shrink check (an operator\'s explicit decision)'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "hits" -d 'Show the running server\'s hit report: for each list, the clients that asked for its names, most recent first (read from the state directory, where the server saves it within 5 seconds of a change and at shutdown)'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "log" -d 'Search the query log, rotated files included: what a client asked, what a list blocked, who asked for a name; the filters combine'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "completions" -d 'Print the completion script for a shell, e.g. `embargo completions bash > /etc/bash_completion.d/embargo`. Reads no config'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "man" -d 'Print a man page (roff): embargo(8) unless named, e.g. `embargo man embargo.toml | man -l -`. The Debian package installs them all. Reads no config'
complete -c embargo -n "__fish_embargo_using_subcommand help; and not __fish_seen_subcommand_from run check lists history validate reload fetch hits log completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
