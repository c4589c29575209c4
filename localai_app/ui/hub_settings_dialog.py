"""Where models come from: the Hub address (a mirror, or the public Hub) and the access token for gated or
private repositories. The token goes where huggingface_hub keeps it, never into the app's settings."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from localai_app.core.hub import PUBLIC_ENDPOINT, EndpointError, check_endpoint, endpoint_from


class HubSettingsDialog(QDialog):
    def __init__(self, endpoint_setting: str | None, has_token: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Hub settings")
        self.endpoint = QLineEdit(endpoint_setting or "")
        self.endpoint.setAccessibleName("Hub address")
        # What an empty field means right now: HF_ENDPOINT when the environment sets it, else the public Hub.
        self.endpoint.setPlaceholderText(endpoint_from(None))
        self.endpoint.setToolTip(f"A mirror's address, or empty for {PUBLIC_ENDPOINT} (or HF_ENDPOINT when set)")
        self.token = QLineEdit()
        self.token.setAccessibleName("Access token")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("a token is stored; type to replace it" if has_token else "hf_…")
        self.forget_token = QCheckBox("Forget the stored token")
        self.forget_token.setEnabled(has_token)
        self.error = QLabel()
        self.error.setObjectName("hubSettingsError")
        self.error.setStyleSheet("color: #a61b1b;")
        self.error.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Hub address", self.endpoint)
        form.addRow("Access token", self.token)
        form.addRow("", self.forget_token)
        note = QLabel(
            "The token is for gated or private repositories. It is stored where huggingface_hub keeps it "
            "(readable by you only), not in the app's settings, and is only ever sent to the Hub address above."
        )
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.chosen_endpoint: str | None = endpoint_setting

    def accept(self) -> None:
        """Stays open with the reason when the address is not one."""
        try:
            self.chosen_endpoint = check_endpoint(self.endpoint.text())
        except EndpointError as error:
            self.error.setText(str(error))
            self.endpoint.setFocus()
            return
        super().accept()

    def token_change(self) -> str | None:
        """The token to store ("" removes it), or None to leave the stored one as it is."""
        if self.forget_token.isChecked():
            return ""
        return self.token.text().strip() or None
