"""The judge prompts page: every stored version, and a form saving a new one (a changed text under a name is
that name's next version; verdicts are cached per version)."""

from django import forms
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse

from apps.core import audit
from apps.rollouts.models import JudgePrompt
from workers.rewards.judge import DEFAULT_PROMPT, check_prompt_text


class JudgePromptForm(forms.Form):
    name = forms.SlugField(max_length=100, initial="default")
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 16}), max_length=20_000, initial=DEFAULT_PROMPT,
                           help_text="{prompt}, {reference}, {completion} (the whole completion) and {answer} (its "
                                     "final answer) are filled in per sample; end with a 'VERDICT: correct|incorrect' "
                                     "line (what is parsed) and a 'REASON:' line")
    description = forms.CharField(required=False, max_length=2000)

    def clean_text(self):
        if problem := check_prompt_text(self.cleaned_data["text"]):
            raise forms.ValidationError(problem)
        return self.cleaned_data["text"]


@permission_required("rollouts.view_judgeprompt", raise_exception=True)
def judge_prompt_list(request):
    form = JudgePromptForm(request.POST or None)
    if request.method == "POST":
        if not request.user.has_perm("rollouts.add_judgeprompt"):
            raise PermissionDenied
        if form.is_valid():
            data = form.cleaned_data
            known = JudgePrompt.objects.filter(name=data["name"]).count()
            prompt = JudgePrompt.save_text(data["name"], data["text"], user=request.user,
                                           description=data["description"])
            if JudgePrompt.objects.filter(name=data["name"]).count() > known:
                audit.record(request.user, "judge_prompt.create", prompt, via="web", version=prompt.version)
            return redirect(reverse("judge_prompt_list") + f"?saved={prompt.pk}")
    prompts = JudgePrompt.objects.select_related("created_by").order_by("name", "-version")
    saved = request.GET.get("saved", "")
    return render(request, "rollouts/judge_prompts.html", {
        "prompts": prompts, "form": form, "saved": int(saved) if saved.isdigit() else None,
    }, status=400 if form.errors else 200)
