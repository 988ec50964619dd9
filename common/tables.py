"""Markdown tables: readable in a terminal, and pasted as-is into README and benchmark files."""


def format_table(rows, columns):
    """`rows` are dicts; floats get 4 decimals, missing cells stay empty."""
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
