# bash completion for msg (printed by `msg completions bash`).
# Each TAB asks `msg complete-words` what fits; it never offers file names.
_msg() {
    local IFS=$'\n'
    local words
    words=$(command msg complete-words --shell bash "$COMP_CWORD" -- "${COMP_WORDS[@]}" 2>/dev/null)
    COMPREPLY=($(compgen -W "$words" -- "${COMP_WORDS[COMP_CWORD]}"))
}
complete -F _msg msg
