"""The desktop client's account cards: choose or change a password, and the
list of sessions (devices logged in) with "Log out" buttons.

Both are cards placed over the window, like the room dialog.  They only show
fields and forward intent (``on_submit``, ``on_revoke``); the window talks to
the session.  Passwords are read from the fields and the fields are cleared:
nothing here keeps one.
"""
from __future__ import annotations

import tkinter as tk
from tkinter import ttk
from typing import Callable, Optional

from .. import core
from .theme import Theme


class _Card(ttk.Frame):
    def __init__(self, master: tk.Misc, theme: Theme, title: str, note: str,
                 on_cancel: Callable[[], None]):
        super().__init__(master, style="Card.TFrame", padding=(theme.px(26), theme.px(22)))
        self.theme = theme
        self.on_cancel = on_cancel
        px = theme.px
        self.title = ttk.Label(self, text=title, style="Title.TLabel")
        self.title.grid(row=0, column=0, columnspan=2, sticky="w")
        self.note = ttk.Label(self, text=note, style="CardNote.TLabel", wraplength=px(380),
                              justify="left")
        self.note.grid(row=1, column=0, columnspan=2, sticky="w", pady=(px(2), px(14)))
        self.message = ttk.Label(self, text="", style="CardNote.TLabel", wraplength=px(380),
                                 justify="left")
        self.columnconfigure(0, weight=1)
        self.bind("<Escape>", lambda e: self.cancel())

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme

    def say(self, text: str, level: str = "note") -> None:
        self.message.configure(text=text, style="CardError.TLabel" if level == "error"
                               else "CardNote.TLabel")

    @property
    def message_text(self) -> str:
        return str(self.message.cget("text"))

    def place_card(self) -> None:
        self.place(relx=0.5, rely=0.45, anchor="center")
        self.lift()

    def hide(self) -> None:
        self.place_forget()

    @property
    def visible(self) -> bool:
        return bool(self.winfo_manager())

    def cancel(self) -> None:
        self.hide()
        self.on_cancel()


class PasswordCard(_Card):
    """Register this name (a new password, twice) or change the password (the
    current one, then the new one twice).  ``on_submit(mode, old, new)``."""

    def __init__(self, master: tk.Misc, theme: Theme,
                 on_submit: Callable[[str, Optional[str], str], None],
                 on_cancel: Callable[[], None]):
        super().__init__(master, theme, "", "", on_cancel)
        self.on_submit = on_submit
        self.mode = "register"
        px = theme.px
        self.old_label = ttk.Label(self, text="CURRENT PASSWORD", style="Field.TLabel")
        self.old_entry = ttk.Entry(self, show="\u2022", width=36)
        self.new_label = ttk.Label(self, text="NEW PASSWORD", style="Field.TLabel")
        self.new_entry = ttk.Entry(self, show="\u2022", width=36)
        self.again_label = ttk.Label(self, text="NEW PASSWORD AGAIN", style="Field.TLabel")
        self.again_entry = ttk.Entry(self, show="\u2022", width=36)
        row = 2
        for label, entry in ((self.old_label, self.old_entry), (self.new_label, self.new_entry),
                             (self.again_label, self.again_entry)):
            label.grid(row=row, column=0, columnspan=2, sticky="w")
            entry.grid(row=row + 1, column=0, columnspan=2, sticky="ew", pady=(px(4), px(10)))
            for seq in ("<Return>", "<KP_Enter>"):
                entry.bind(seq, lambda e: self.submit())
            entry.bind("<Escape>", lambda e: self.cancel())
            row += 2
        self.message.grid(row=row, column=0, columnspan=2, sticky="w", pady=(0, px(10)))
        buttons = ttk.Frame(self, style="CardInner.TFrame")
        buttons.grid(row=row + 1, column=0, columnspan=2, sticky="e")
        self.cancel_button = ttk.Button(buttons, text="Cancel", command=self.cancel,
                                        cursor="hand2")
        self.cancel_button.pack(side="left")
        self.ok_button = ttk.Button(buttons, text="", style="Accent.TButton",
                                    command=self.submit, cursor="hand2")
        self.ok_button.pack(side="left", padx=(px(10), 0))

    def show(self, mode: str, name: str) -> None:
        """``mode``: "register" (a guest keeps ``name``) or "change"."""
        self.mode = mode
        self.clear()
        self.say("")
        if mode == "register":
            self.title.configure(text=f"Keep the name \u201c{name}\u201d")
            self.note.configure(text=f"Make {name} an account: nobody else can take it, and "
                                     f"you log in with this password from any device "
                                     f"({core.PASSWORD_MIN} characters or more).")
            self.ok_button.configure(text="Register")
            self.old_label.grid_remove()
            self.old_entry.grid_remove()
        else:
            self.title.configure(text="Change your password")
            self.note.configure(text="Your other devices will be logged out.")
            self.ok_button.configure(text="Change password")
            self.old_label.grid()
            self.old_entry.grid()
        self.place_card()
        (self.new_entry if mode == "register" else self.old_entry).focus_force()

    def clear(self) -> None:
        for e in (self.old_entry, self.new_entry, self.again_entry):
            e.delete(0, "end")

    def submit(self) -> None:
        old = self.old_entry.get() if self.mode == "change" else None
        new, again = self.new_entry.get(), self.again_entry.get()
        if self.mode == "change" and not old:
            self.say("Type your current password.", "error")
            self.old_entry.focus_force()
            return
        problem = core.password_problem(new)
        if problem:
            self.say(f"The new password will not do: {problem}.", "error")
            self.new_entry.focus_force()
            return
        if new != again:
            self.say("The two new passwords differ.", "error")
            self.again_entry.delete(0, "end")
            self.again_entry.focus_force()
            return
        self.say("Sending\u2026")
        self.clear()
        self.on_submit(self.mode, old, new)


class SessionsCard(_Card):
    """The account's sessions (one row per device) with "Log out" buttons.
    ``on_revoke(session_id or None for all the others)``; ``on_refresh()``."""

    COLUMNS = ("device", "created", "seen", "state")

    def __init__(self, master: tk.Misc, theme: Theme,
                 on_revoke: Callable[[Optional[str]], None], on_refresh: Callable[[], None],
                 on_cancel: Callable[[], None]):
        super().__init__(master, theme, "Your sessions",
                         "The devices logged in to your account.  Log out one you do not "
                         "recognise, or all but this one.", on_cancel)
        self.on_revoke = on_revoke
        self.on_refresh = on_refresh
        self.rows: list[tuple[str, ...]] = []
        px = theme.px
        self.note.configure(wraplength=px(500))
        self.tree = ttk.Treeview(self, columns=self.COLUMNS, show="headings", height=6,
                                 selectmode="browse", style="Sessions.Treeview")
        for col, text, width in (("device", "Device", 170), ("created", "Logged in", 120),
                                 ("seen", "Last seen", 120), ("state", "", 90)):
            self.tree.heading(col, text=text, anchor="w")
            self.tree.column(col, width=px(width), anchor="w", stretch=col == "device")
        self.tree.grid(row=2, column=0, columnspan=2, sticky="nsew", pady=(0, px(10)))
        self.tree.bind("<<TreeviewSelect>>", lambda e: self._selected())
        self.tree.bind("<Escape>", lambda e: self.cancel())
        self.message.grid(row=3, column=0, columnspan=2, sticky="w", pady=(0, px(10)))
        buttons = ttk.Frame(self, style="CardInner.TFrame")
        buttons.grid(row=4, column=0, columnspan=2, sticky="ew")
        self.others_button = ttk.Button(buttons, text="Log out all others", cursor="hand2",
                                        command=lambda: self.on_revoke(None))
        self.others_button.pack(side="left")
        self.close_button = ttk.Button(buttons, text="Close", command=self.cancel,
                                       cursor="hand2")
        self.close_button.pack(side="right")
        self.revoke_button = ttk.Button(buttons, text="Log out selected", style="Accent.TButton",
                                        command=self._revoke_selected, cursor="hand2",
                                        state="disabled")
        self.revoke_button.pack(side="right", padx=(0, px(10)))

        self.apply_theme(theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        c, f, px = theme.palette, theme.fonts, theme.px
        style = ttk.Style(self)
        style.configure("Sessions.Treeview", background=c.field, fieldbackground=c.field,
                        foreground=c.text, font=f["body"], rowheight=px(28), borderwidth=0)
        style.map("Sessions.Treeview", background=[("selected", c.selection)],
                  foreground=[("selected", c.text)])
        style.configure("Sessions.Treeview.Heading", background=c.sidebar,
                        foreground=c.text_dim, font=f["small"], relief="flat")
        style.map("Sessions.Treeview.Heading", background=[("active", c.sidebar)])

    def show(self) -> None:
        self.say("Loading\u2026")
        self.set_sessions([])
        self.place_card()
        self.tree.focus_force()
        self.on_refresh()

    def set_sessions(self, sessions: list[dict]) -> None:
        self.rows = core.session_rows(sessions)
        self.tree.delete(*self.tree.get_children())
        for sid, device, created, seen, state in self.rows:
            self.tree.insert("", "end", iid=sid, values=(device, created, seen, state))
        n = len(self.rows)
        if self.message_text == "Loading\u2026" or not self.message_text:
            self.say(f"{n} session{'s' if n != 1 else ''}." if n else "")
        self._selected()

    def _selected(self) -> None:
        sel = self.tree.selection()
        self.revoke_button.configure(state="normal" if sel else "disabled")

    def _revoke_selected(self) -> None:
        sel = self.tree.selection()
        if sel:
            self.on_revoke(sel[0])
