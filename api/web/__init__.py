"""The Alerts page's parts: cookie sessions and sign-in (``auth``), and the HTML (``render``, ``page``)."""
