#compdef msg
# zsh completion for msg (printed by `msg completions zsh`).
# Each TAB asks `msg complete-words` what fits; it never offers file names.
_msg() {
    local -a candidates
    candidates=("${(@f)$(command msg complete-words --shell zsh $((CURRENT - 1)) -- "${words[@]}" 2>/dev/null)}")
    candidates=("${(@)candidates:#}")
    candidates=("${(@)candidates/$'\t'/:}")
    (( ${#candidates} )) && _describe -t msg 'msg' candidates
}
if [ "$funcstack[1]" = "_msg" ]; then
    _msg "$@"
else
    compdef _msg msg
fi
