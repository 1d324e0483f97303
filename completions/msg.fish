# fish completion for msg (printed by `msg completions fish`).
# Each TAB asks `msg complete-words` what fits; it never offers file names.
function __msg_complete
    set -l before (commandline -opc)
    command msg complete-words --shell fish (count $before) -- $before (commandline -ct) 2>/dev/null
end
complete -c msg -f -a '(__msg_complete)'
